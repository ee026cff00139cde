"""Batch prediction over image folders for every task: nothing lost, nothing half-written, the model kept busy.

``densevision predict`` (and ``tools/predict.py``) calls :func:`predict_command`. The flow:

1. every input is listed first (files, folders walked recursively, glob patterns; never the output folder, even
   inside an input folder; an unusable entry such as a symbolic link loop is skipped and reported), each output
   path planned by the task's prediction writer (:mod:`densevision.inference.writers`: ``prediction_files``) with
   the input's relative path kept under the output folder; clashes and existing outputs are refused before the
   model loads (``--overwrite`` replaces, ``--resume`` skips inputs whose outputs all exist and keeps the earlier
   run's records in ``report.json`` and summaries);
2. images are decoded on a thread pool (the one reader, :func:`densevision.data.io.read_image`: EXIF orientation,
   grayscale, 16-bit, RGBA, palette) while the model predicts, and answers are written by a background thread
   (atomic writes: an interrupted run leaves no half-written file);
3. the task answers each image (``task.predict_image`` with the compiled :class:`Forward`): a segmentation map of
   the input's size (tiled with blended seams above ``--max-pixels``), top-k classes, people's keypoints (people
   found by the person finder the pose writer gives the task); test-time flips and scales where the task has
   them; the task's writer writes the answer;
4. a corrupt, empty or unreadable input (or one too large to hold) is skipped with a warning and recorded;
   ``report.json`` lists ``{"ok": [paths], "failed": [{"path", "error"}]}`` and the exit status is 0 when all
   succeeded, 1 when some inputs failed, 2 for a usage error.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import itertools
import json
import os
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from densevision.data.boxes import load_boxes_file
from densevision.data.io import read_image
from densevision.errors import OutputError
from densevision.files import describe_os_error, plan_outputs, write_json
from densevision.inference.dense import dense_scores
from densevision.inference.writers import PredictionError, PredictionWriter, prediction_writer
from densevision.progress import progress_bar
from densevision.tasks.base import Task

REPORT = "report.json"
#: images above this many pixels are predicted tile by tile (dense tasks), bounding memory by the tile size
DEFAULT_MAX_PIXELS = 2048 * 2048
#: output redirected (no bar): one plain progress line per this many images
PROGRESS_EVERY = 50


@dataclasses.dataclass
class PredictOptions:
    """What the prediction tool was asked for (passed to the task's ``predict_image`` and its writer)."""

    overlay: bool = False
    color: bool = False
    top_k: int = 5
    flip: bool = False
    scales: tuple[float, ...] = (1.0,)
    tile: int = 512
    max_pixels: int = DEFAULT_MAX_PIXELS
    single: bool = False
    boxes_file: Optional[str] = None
    batch_size: int = 8


def validate_options(options: PredictOptions) -> PredictOptions:
    """Refuse option values that cannot work, naming the flag (a usage error, before any work)."""
    problems = []
    if options.top_k < 1:
        problems.append(f"--top-k {options.top_k}: must be at least 1")
    if options.tile < 32:
        problems.append(f"--tile {options.tile}: must be at least 32 pixels")
    if options.max_pixels < 1:
        problems.append(f"--max-pixels {options.max_pixels}: must be positive")
    if options.batch_size < 1:
        problems.append(f"--batch-size {options.batch_size}: must be at least 1")
    if not options.scales or any(not 0.1 <= scale <= 4.0 for scale in options.scales):
        problems.append(f"--scales {list(options.scales)}: each must be between 0.1 and 4")
    if options.single and options.boxes_file:
        problems.append("--single and --boxes: choose one way of finding people")
    if problems:
        raise PredictionError("; ".join(problems))
    if options.boxes_file:  # pose: the whole boxes file is checked before any image (BoxesFileError, exit 2)
        load_boxes_file(options.boxes_file)
    return options


@dataclasses.dataclass
class _Job:
    path: Path
    relative: str
    outputs: list[Path]


def _stem(relative: str) -> str:
    """``"a/b/photo.jpg"`` -> ``"a/b/photo"`` (the contract's ``<relative path without extension>``)."""
    return relative.rsplit(".", 1)[0] if "." in Path(relative).name else relative


def plan_jobs(writer: PredictionWriter, images: Sequence[tuple[Path, str]], output_dir: Path,
              options: PredictOptions, overwrite: bool, resume: bool) -> tuple[list[_Job], list[_Job]]:
    """``(to do, already done)``: every input's output files (``writer.prediction_files``), planned before any work.

    Raises:
        OutputError: two inputs writing the same file (``a.jpg`` and ``a.png``), or existing outputs without
            ``overwrite`` / ``resume``.
    """
    jobs = [_Job(path, relative, [output_dir / name for name in writer.prediction_files(_stem(relative), options)])
            for path, relative in images]
    finished = [resume and bool(job.outputs) and all(p.is_file() for p in job.outputs) for job in jobs]
    done = [job for job, skip in zip(jobs, finished) if skip]
    todo = [job for job, skip in zip(jobs, finished) if not skip]
    run_files = [output_dir / REPORT] + [output_dir / name for name in writer.prediction_summary_files(options)]
    # --resume redoes an input whose outputs are incomplete, so its existing files may be replaced too.
    plan_outputs([(str(job.path), out) for job in todo for out in job.outputs] + [("the run", p) for p in run_files],
                 overwrite=overwrite or resume, hint="--resume to skip them")
    return todo, done


def _read(path: Path):
    try:
        return read_image(path), None
    except MemoryError:
        return None, "out of memory while decoding (image too large)"
    except Exception as error:  # ImageReadError names the reason; anything else is still only this file's
        message = str(error)
        return None, message[len(f"{path}: "):] if message.startswith(f"{path}: ") else message


class _WriteThread:
    """Writes answers through the task's writer on a background thread, in order; failures are recorded per input,
    never lost."""

    def __init__(self, writer: PredictionWriter, options: PredictOptions):
        self.writer, self.options = writer, options
        self.queue: queue.Queue = queue.Queue(maxsize=16)
        self.ok: list[str] = []
        self.failed: list[dict[str, str]] = []
        self.records: list[Any] = []
        self.fatal: Optional[BaseException] = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            item = self.queue.get()
            if item is None:
                return
            job, image, answer = item
            if self.fatal is not None:
                continue
            try:
                self.writer.write_prediction(answer, image, job.outputs, self.options)
                record = self.writer.prediction_record(answer, job.relative, image.shape[:2], self.options)
                if record is not None:
                    self.records.append(record)
                self.ok.append(str(job.path))
            except OSError as error:
                # A full or read-only disk fails every later write too: stop, keeping what is written.
                self.fatal = OutputError(f"cannot write the outputs of {job.path} to {job.outputs[0].parent}: "
                                         f"{describe_os_error(error)}; the inputs before it were written")
                self.failed.append({"path": str(job.path), "error": str(self.fatal)})
            except Exception as error:
                self.failed.append({"path": str(job.path), "error": f"writing failed: {error}"})

    def put(self, job, image, answer):
        if self.fatal is not None:
            raise self.fatal
        self.queue.put((job, image, answer))

    def close(self):
        self.queue.put(None)
        self.thread.join()


class Forward:
    """What ``task.predict_image`` receives (:class:`densevision.tasks.base.Forward`): a forward pass over batches
    plus whole-image dense scores built on it.

    ``forward(images float32 (B, H, W, 3)) -> outputs`` (numpy, nested as the model's); :meth:`dense_scores` gives
    one whole image's per-pixel scores, tiled above a pixel budget, with flip and scale averaging.

    Args:
        run: ``fn(images float32 (B, H, W, 3)) -> outputs`` (numpy): :func:`make_forward` compiles a model's, and
            any such function can be wrapped (a stand-in model in a test).
    """

    def __init__(self, run: Callable[[np.ndarray], Any]):
        self.run = run

    def __call__(self, images: np.ndarray):
        return self.run(images)

    def dense_scores(self, image: np.ndarray, flip: bool = False, scales: Sequence[float] = (1.0,), tile: int = 512,
                     max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
        """``(H, W, C)`` float32 scores of one uint8 ``(H, W, 3)`` image (:func:`densevision.inference.dense.
        dense_scores`)."""
        return dense_scores(self.run, image, flip=flip, scales=scales, tile=tile, max_pixels=max_pixels)


def make_forward(model, task: Task) -> Forward:
    """The task's forward pass over ``model`` (``task.forward``, which may add test-time flips), compiled once with
    relaxed shapes (images of many sizes share one trace instead of retracing per size), as a :class:`Forward`."""
    compiled = tf.function(lambda images: task.forward(model, images, training=False), reduce_retracing=True)

    def run(images: np.ndarray):
        outputs = compiled(tf.convert_to_tensor(images, tf.float32))
        return tf.nest.map_structure(lambda t: t.numpy(), outputs)

    return Forward(run)


def merge_report(earlier: Any, now: dict[str, Any]) -> dict[str, Any]:
    """An earlier run's ``report.json`` merged with this run's (``--resume``): an input this run listed keeps its
    newest verdict, every other input its earlier one (nothing an earlier run recorded is lost).

    Args:
        earlier: the earlier report as read (anything that is not such a report counts as empty).
        now: ``{"ok": [paths], "failed": [{"path", "error"}]}`` of this run.
    """
    earlier = earlier if isinstance(earlier, dict) else {}
    seen = set(now["ok"]) | {item["path"] for item in now["failed"]}
    ok = [path for path in earlier.get("ok", []) if isinstance(path, str) and path not in seen]
    failed = [item for item in earlier.get("failed", []) if isinstance(item, dict) and item.get("path") not in seen]
    return {"ok": ok + list(now["ok"]), "failed": failed + list(now["failed"])}


def read_json(path: Path, default: Any = None) -> Any:
    """The JSON in ``path``, or ``default`` when it is missing or not JSON (an earlier run's summary file)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return default


def predict_folder(model, task, images: Sequence[tuple[Path, str]], output_dir: str | os.PathLike,
                   options: Optional[PredictOptions] = None, overwrite: bool = False, resume: bool = False,
                   progress: bool = True, skipped: Sequence[dict[str, str]] = ()) -> dict[str, Any]:
    """Predict every image and write the task's outputs under ``output_dir``.

    Args:
        model: images ``(B, H, W, 3)`` float32 in [0, 255] -> the task's outputs.
        task: the recipe's task (it answers; its writer, :func:`densevision.inference.writers.prediction_writer`,
            plans and writes).
        images: ``[(path, relative path)]`` (see :func:`densevision.data.io.list_images`).
        output_dir: created if needed; nothing is written outside it.
        options: see :class:`PredictOptions`.
        overwrite: replace existing outputs; resume: skip inputs whose outputs all exist, and keep what an
            earlier run recorded in ``report.json`` and the task's summary files for inputs not seen now.
        skipped: ``[{"path", "error"}]`` of inputs found unusable while listing them (reported as failed).

    Returns:
        This run's ``{"ok": [paths], "failed": [{"path", "error"}], "skipped": int, "seconds": float}`` (also
        written as ``report.json`` without ``skipped`` and ``seconds``, merged with an earlier one under ``resume``).
    """
    options = options or PredictOptions()
    output_dir = Path(output_dir)
    predictions = prediction_writer(task)
    todo, done = plan_jobs(predictions, images, output_dir, options, overwrite, resume)
    output_dir.mkdir(parents=True, exist_ok=True)
    predictions.configure(options)
    forward = make_forward(model, task)
    writer = _WriteThread(predictions, options)
    failed: list[dict[str, str]] = []
    started = time.perf_counter()
    bar = progress_bar(total=len(todo), desc="predict", unit="image", enabled=progress, every=PROGRESS_EVERY,
                       dynamic_ncols=True)
    # Decoding runs ahead on a thread pool (OpenCV and PIL release the GIL) while the model predicts.
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        jobs = iter(todo)
        # A bounded window of decodes runs ahead of the model (memory stays bounded on huge folders).
        pending = [(job, pool.submit(_read, job.path))
                   for job in itertools.islice(jobs, 2 * max(1, options.batch_size))]
        try:
            while pending:
                job, future = pending.pop(0)
                nxt = next(jobs, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(_read, nxt.path)))
                image, error = future.result()
                if image is not None:
                    try:
                        answer = task.predict_image(forward, image, options, key=job.relative)
                    except (MemoryError, tf.errors.ResourceExhaustedError):
                        image, error = None, "out of memory while predicting (lower --tile or --max-pixels)"
                    except (ValueError, tf.errors.InvalidArgumentError) as failure:
                        image, error = None, f"prediction failed: {failure}"
                if image is None:
                    print(f"warning: skipped {job.path}: {error}", file=sys.stderr)
                    failed.append({"path": str(job.path), "error": str(error)})
                else:
                    writer.put(job, image, answer)
                bar.update(1)
                bar.set_postfix(img_s=f"{bar.n / max(time.perf_counter() - started, 1e-9):.2f}")
        finally:
            for _, future in pending:
                future.cancel()
            writer.close()
            bar.close()
    if writer.fatal is not None:
        raise writer.fatal
    failed = list(skipped) + failed + writer.failed
    predictions.finish_predictions(writer.records, output_dir, options, resume=resume)
    report = {"ok": [str(job.path) for job in done] + writer.ok, "failed": failed}
    write_json(output_dir / REPORT, merge_report(read_json(output_dir / REPORT), report) if resume else report)
    return {**report, "skipped": len(done), "seconds": time.perf_counter() - started}


def summary(result: dict[str, Any], output_dir) -> str:
    """The lines ``densevision predict`` prints after a run: images/s, where the outputs are, the failures."""
    ok, failed = len(result["ok"]), len(result["failed"])
    seconds = result.get("seconds", 0.0)
    done_now = ok - result.get("skipped", 0)
    lines = [f"predicted {done_now} image(s) in {seconds:.1f} s ({done_now / max(seconds, 1e-9):.2f} images/s)"
             + (f", {result['skipped']} already done (--resume)" if result.get("skipped") else ""),
             f"outputs in {output_dir}, report in {Path(output_dir) / REPORT}"]
    if failed:
        lines.append(f"{failed} input(s) failed:")
        lines += [f"  {item['path']}: {item['error']}" for item in result["failed"][:10]]
        if failed > 10:
            lines.append(f"  ... and {failed - 10} more (see {REPORT})")
    return "\n".join(lines)


