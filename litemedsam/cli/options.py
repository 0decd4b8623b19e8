"""What `infer` and `serve` read from the command line alike, checked in this one place: the boxes and intensity
options of the cases (``case_inputs``) and the router with its modality (``load_router``)."""
from litemedsam.core.errors import UsageError, shown


def case_inputs(box_texts, boxes_file, labels_path, window, modality, line_texts=(), recist_path=None):
    """The command line's prompts (boxes, or RECIST lines) and intensity options
    (litemedsam.io.given_boxes.CaseInputs), checked once."""
    from litemedsam.io.given_boxes import CaseInputs, parse_box, read_boxes_table
    from litemedsam.io.intensity import checked_window
    from litemedsam.io.lines import parse_line

    if sum(bool(x) for x in (box_texts, boxes_file, labels_path, line_texts, recist_path)) > 1:
        raise UsageError("give prompts one way: --box, --boxes, --boxes-from-labels, --line or --recist")
    inputs = CaseInputs(modality=modality)
    inputs.lines = [parse_line(text) for text in line_texts]
    if recist_path is not None:
        if not recist_path.exists():
            raise UsageError(f"--recist {shown(recist_path)}: no such file or folder")
        inputs.recist = recist_path
    inputs.boxes = [parse_box(text) for text in box_texts]
    if len({len(b) for b in inputs.boxes}) > 1:
        raise UsageError("--box: all boxes of a run are 2D (4 numbers) or all 3D (6)")
    if boxes_file is not None:
        inputs.table, inputs.table_name = read_boxes_table(boxes_file), shown(boxes_file.name)
    if labels_path is not None:
        if not labels_path.exists():
            raise UsageError(f"--boxes-from-labels {shown(labels_path)}: no such file or folder")
        inputs.labels = labels_path
    if window is not None:
        parts = window.split(",")
        inputs.window = checked_window(*parts if len(parts) == 2 else (0, 0), option=f"--window {shown(window)!r}")
    return inputs


def load_router(router_file, modality):
    """The router (the shipped one, or ``router_file``), with ``modality`` checked to be one of its own."""
    from litemedsam.methods.router import Router

    router = Router.load(router_file)
    router.check_modality(modality)
    return router
