"""One model run at a time (litemedsam.serve.encoding.ModelTurns): a prompt that comes while a background turn
encodes stops that turn's runs at once (ONNX Runtime's terminate flag), takes the model, and the background
encoder does the stopped slices again afterwards, with the same embeddings."""
import threading
import time

import numpy as np

from litemedsam.serve.encoding import ModelTurns


def wait_until(condition, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not condition():  # polling the state itself, not a guess at when it changes
        assert time.monotonic() < deadline, "never happened"
        time.sleep(0.001)


def test_a_prompt_stops_the_background_turn_and_goes_first():
    turns, order = ModelTurns(), []
    entered, release = threading.Event(), threading.Event()

    def background():
        with turns.background() as turn:
            options = turn.options()
            entered.set()
            release.wait(60)
            order.append(("background", options.terminate, turn.stopped))
        with turns.background():
            order.append(("background again", None, None))

    def prompt():
        with turns:
            order.append(("prompt", None, None))

    b = threading.Thread(target=background)
    b.start()
    entered.wait(60)
    p = threading.Thread(target=prompt)
    p.start()
    wait_until(lambda: turns.waiting == 1)
    release.set()  # the background run sees its terminate flag (ONNX Runtime would raise) and its turn ends
    b.join(60)
    p.join(60)
    assert order == [("background", True, True), ("prompt", None, None), ("background again", None, None)]


def test_a_run_started_after_the_stop_is_stopped_too():
    turns = ModelTurns()
    with turns.background() as turn:
        turn.stop()
        assert turn.options().terminate


def test_stopped_slices_are_encoded_again_with_the_same_embeddings(models_ready, dev_data):
    from litemedsam.io.formats.challenge import load_case
    from litemedsam.methods.prompting import BoxPrompting
    from litemedsam.methods.router import Router
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.serve.encoding import CachingSegmenter, EmbeddingCache
    from litemedsam.serve.scene import Scene

    case = load_case(dev_data / "imgs" / "3DBox_CT_CT_Lesion_000009_03_01_036-048.npz")
    segmenters = Segmenters()
    scene = Scene(case, BoxPrompting(Router.load()), segmenters, EmbeddingCache(256 << 20))
    stop, done = threading.Event(), []
    ahead = threading.Thread(target=scene.encode_ahead, args=(lambda: 0, stop, done.append))
    ahead.start()
    stopped = 0
    while ahead.is_alive() and stopped < 3:  # a prompt while a background run is under way, three times
        wait_until(lambda: not ahead.is_alive() or running_runs(scene))
        if not ahead.is_alive():
            break
        with scene.turns:
            stopped += 1
    ahead.join(600)
    assert sorted(done) == list(range(scene.depth)) and stopped >= 1
    model = scene.model_for()
    plain = segmenters.get(model)
    caching = CachingSegmenter(plain, scene.cache, model)
    for z in range(scene.depth):
        kept = scene.cache.items[caching.key(scene.image_slice(z))]
        assert np.array_equal(kept.features, plain.encode(scene.image_slice(z)).features), z


def running_runs(scene) -> bool:
    """Whether a background turn has model runs under way (or about to start)."""
    turn = scene.turns.running
    return turn is not None and bool(getattr(turn, "runs", None))


def test_a_server_warms_its_models_before_the_first_prompt(models_ready):
    """Both servers load the model a prompt will run and warm its decoder while they start (no image needed), so
    that the first prompt after a restart, its slices read from disk, runs a warm decoder."""
    from litemedsam.methods.prompting import BoxPrompting
    from litemedsam.methods.router import Router
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.serve.background import warm_models

    prompting, segmenters = BoxPrompting(Router.load()), Segmenters()
    assert prompting.model_of("3D") == "litemedsam"
    warm_models(prompting, segmenters, ("2D", "3D"))
    assert list(segmenters.loaded) == ["litemedsam"] and segmenters.get("litemedsam").warmed


def test_a_model_that_cannot_load_at_start_is_logged_not_raised(caplog):
    from litemedsam.core.errors import ModelError
    from litemedsam.models.segmenter import Segmenters
    from litemedsam.serve.background import warm_models

    class Prompting:
        def model_of(self, dim):
            return "litemedsam"

    def factory(name):
        raise ModelError(f"{name}: missing work_dir/litemedsam_encoder.onnx")

    warm_models(Prompting(), Segmenters(factory=factory), ("3D",))
    assert "warming the models up failed: litemedsam: missing" in caplog.text
