"""Human pose, top-down: one person crop in, one heatmap per joint out (Newell et al. 2016; Xiao et al. 2018).

A sample is one person instance of a full image (``"keypoints"`` (J, 3) in image pixels, ``"center"``, ``"scale"``;
see :mod:`densevision.data.topdown`). Preparing it:

1. crop: the region of ``scale`` pixels around ``center`` is warped to ``data.input_size = [H, W]`` (aspect kept),
   keypoints follow; the affine (original -> crop) travels with the example so answers map back exactly;
2. augment: albumentations on the crop (``Affine`` rotation/scale, ``HorizontalFlip``, colour, ...); a mirror swaps
   left and right joints through the dataset's flip pairs (:class:`densevision.data.augment.Augmenter`);
3. encode: the codec (``codec:`` section, default ``heatmap``) renders Gaussian targets at a quarter of the input
   size and per-joint weights from visibility.

Metrics (chosen by the dataset's ``info["metric"]``):

- ``pck`` (LSP): a joint is correct within ``0.2 x`` the torso (right shoulder to left hip of the ground truth);
- ``pckh`` (MPII): within ``0.5 x`` the head size (0.6 x head box diagonal, as MPII's official evaluation);
- ``coco_ap``: OKS AP / AP50 / AP75 / AR through pycocotools' COCOeval on COCO-format results (collect-then-
  finalise on the chief), with PCK@0.2 of the box size as an additive training signal.

PCK and PCKh are counted in crop coordinates: the crop is a similarity transform (one scale for x and y), so
ratios of distances are those of the original image.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable, Optional

import cv2
import numpy as np
import tensorflow as tf

from densevision.codecs.heatmap import flip_back, to_image as crop_to_image
from densevision.data import topdown
from densevision.data.augment import build_augmentation
from densevision.data.boxes import load_boxes_file
from densevision.data.demo_people import make_demo_coco_keypoints
from densevision.files import write_png, write_text
from densevision.registry import CODECS, TASKS
from densevision.tasks.base import Forward, Task, final_output, to_uint8
from densevision.tasks.pose_metrics import coco_keypoint_ap, coco_results, instance_scores, pck_counts_tf, pck_summary
from densevision.visualization.pose import side_by_side_pose

#: ``finder(image uint8 (H, W, 3), key) -> (boxes (N, 4) [x, y, w, h], scores (N,))``: how a pose task finds people
#: in a whole image (:mod:`densevision.inference.people` makes them: whole image, boxes file, HOG detector)
PersonFinder = Callable[[np.ndarray, str], tuple[np.ndarray, np.ndarray]]

DEFAULT_INPUT_SIZE = (256, 256)
#: metric name -> (result key, default threshold)
_PCK_METRICS = {"pck": ("pck", 0.2), "pckh": ("pckh", 0.5), "coco_ap": ("pck", 0.2)}


@TASKS.register("pose")
class PoseTask(Task):
    """Top-down keypoint heatmaps for the joints of ``info`` (names, skeleton, flip pairs, colours, sigmas).

    Outputs: one ``(B, h, w, J)`` heatmap tensor or a list of them (one per hourglass stack; the last predicts).
    """

    name = "pose"
    output_rank = 4  # (B, h, w, J) heatmaps
    output_stride = 4  # heatmaps at a quarter of the crop (every densevision pose model)
    default_loss = "heatmap_mse"

    def __init__(self, recipe, info: dict[str, Any]):
        super().__init__(recipe, info)
        for key in ("joint_names", "flip_pairs", "skeleton"):
            if key not in info:
                raise ValueError(f"pose task: the dataset info has no {key!r} (keys: {sorted(info)})")
        self.joint_names: list[str] = [str(name) for name in info["joint_names"]]
        self.num_joints = len(self.joint_names)
        self.flip_pairs = [tuple(int(i) for i in pair) for pair in info["flip_pairs"]]
        self.metric = str(info.get("metric", "pck"))
        self.metric_key, default_threshold = _PCK_METRICS.get(self.metric, ("pck", 0.2))
        self.threshold = float(info.get("pck_threshold") or default_threshold)
        data_options = recipe.data.kwargs() if recipe is not None else {}
        self.input_size = tuple(int(v) for v in data_options.get("input_size", DEFAULT_INPUT_SIZE))
        codec_section = getattr(recipe, "codec", None) if recipe is not None else None
        codec_name = codec_section.name if codec_section is not None else "heatmap"
        codec_options = dict(codec_section.kwargs()) if codec_section is not None else {}
        self.codec = CODECS.get(codec_name)(input_size=self.input_size, **codec_options)
        test = getattr(recipe, "test", None) if recipe is not None else None
        self.flip_test = bool(getattr(test, "flip_test", False))
        #: set by the caller before :meth:`predict_image` (prediction: the pose writer, from the options)
        self.person_finder: Optional[PersonFinder] = None

    @property
    def default_monitor(self) -> tuple[str, str]:
        return ("ap" if self.metric == "coco_ap" else self.metric_key, "max")

    @property
    def heatmap_size(self) -> tuple[int, int]:
        return tuple(self.codec.heatmap_size)

    # ------------------------------------------------------------------------------------------ data
    @property
    def example_spec(self) -> dict[str, tf.TensorSpec]:
        """One person crop with its targets and what maps answers back to the original image:
        ``image`` (H, W, 3), ``heatmaps`` (h, w, J), ``target_weight`` (J,), ``keypoints`` (J, 3) in crop pixels,
        ``normalizer`` () (torso or head size in crop pixels, 0 when undefined), ``affine`` (2, 3) original ->
        crop, ``image_id`` (), ``box_score`` ()."""
        height, width = self.input_size
        h, w = self.heatmap_size
        joints = self.num_joints
        return {
            "image": tf.TensorSpec((height, width, 3), tf.float32),
            "heatmaps": tf.TensorSpec((h, w, joints), tf.float32),
            "target_weight": tf.TensorSpec((joints,), tf.float32),
            "keypoints": tf.TensorSpec((joints, 3), tf.float32),
            "normalizer": tf.TensorSpec((), tf.float32),
            "affine": tf.TensorSpec((2, 3), tf.float32),
            "image_id": tf.TensorSpec((), tf.int64),
            "box_score": tf.TensorSpec((), tf.float32),
        }

    def crop(self, sample: dict) -> dict:
        """The person crop of a sample: image warped to ``input_size``, keypoints in crop pixels, ``affine`` kept."""
        affine = topdown.crop_affine(sample["center"], sample["scale"], self.input_size)
        cropped = dict(sample)
        cropped["image"] = topdown.warp_to_crop(sample["image"], affine, self.input_size)
        if "keypoints" in sample:
            cropped["keypoints"] = topdown.transform_points(sample["keypoints"], affine)
        cropped["affine"] = affine.astype(np.float32)
        return cropped

    def augmenter(self, transforms: list, training: bool) -> Callable:
        """``fn(sample, seed) -> sample``: the top-down crop, then the recipe's transforms on the crop (a mirror
        swaps joints through the flip pairs)."""
        augment = build_augmentation(transforms, target="keypoints", flip_pairs=self.flip_pairs)

        def crop_and_augment(sample: dict, seed: Optional[int]) -> dict:
            return augment(self.crop(sample), seed)

        return crop_and_augment

    def encode(self, sample: dict) -> dict[str, np.ndarray]:
        keypoints = np.asarray(sample["keypoints"], np.float32)
        if keypoints.shape != (self.num_joints, 3):
            name = sample.get("meta", {}).get("name", "?")
            raise ValueError(f"pose sample {name}: keypoints of shape {keypoints.shape}, expected "
                             f"({self.num_joints}, 3)")
        heatmaps, target_weight = self.codec.encode(keypoints)
        meta = sample.get("meta", {})
        return {
            "image": sample["image"],
            "heatmaps": heatmaps,
            "target_weight": target_weight,
            "keypoints": keypoints,
            "normalizer": np.float32(self._normalizer(keypoints, sample)),
            "affine": sample["affine"],
            "image_id": np.int64(meta.get("image_id", meta.get("index", -1))),
            "box_score": np.float32(meta.get("box_score", 1.0)),
        }

    def _normalizer(self, keypoints: np.ndarray, sample: dict) -> float:
        """The PCK distance unit in crop pixels (0: this example has none and is left out of PCK)."""
        affine = np.asarray(sample["affine"], np.float64)
        crop_scale = float(np.sqrt(abs(np.linalg.det(affine[:, :2]))))
        meta = sample.get("meta", {})
        if self.metric == "pckh":
            return float(meta.get("head_size", 0.0)) * crop_scale
        if self.metric == "pck" and "torso_joints" in self.info:
            first, second = self.info["torso_joints"]
            if keypoints[first, 2] > 0 and keypoints[second, 2] > 0:
                return float(np.linalg.norm(keypoints[first, :2] - keypoints[second, :2]))
            return 0.0
        box = meta.get("box")  # COCO: PCK relative to the box size (a training signal; AP is the metric)
        return float(max(box[2], box[3])) * crop_scale if box is not None else 0.0

    # ------------------------------------------------------------------------------------------ inference
    def forward(self, model, images, training: bool = False):
        """The model's outputs; with ``test.flip_test`` (inference only) the last output is the mean of the crop's
        heatmaps and the mirrored crop's heatmaps flipped back."""
        outputs = model(images, training=training)
        if training or not self.flip_test:
            return outputs
        # No extra one-cell shift: with the codec's aligned convention (heatmap cell centres on the pixels they
        # cover) mirroring the crop maps u -> w - 1 - u exactly (see densevision.codecs.heatmap.flip_back).
        mirrored = final_output(model(tf.reverse(images, axis=[2]), training=False))
        averaged = 0.5 * (final_output(outputs) + flip_back(mirrored, self.flip_pairs))
        if isinstance(outputs, (list, tuple)):
            return [*outputs[:-1], averaged]
        return averaged

    # ------------------------------------------------------------------------------------------ training
    @functools.cached_property
    def loss_function(self) -> Callable:
        return self._configured_loss()

    def loss(self, batch: dict, outputs):
        """``(B,)``: the recipe's heatmap loss (default masked MSE) over every stack's output."""
        return self.loss_function(batch["heatmaps"], batch["target_weight"], outputs)

    def _decode_tf(self, outputs):
        return self.codec.decode_tf(tf.cast(final_output(outputs), tf.float32))

    def metric_sums(self, batch: dict, outputs) -> dict:
        """``{"hits": (J,) int32, "counts": (J,) int32}``: joints within ``threshold x normalizer`` of the truth, and
        joints counted (labelled, and the example has a normalizer)."""
        predicted, _ = self._decode_tf(outputs)
        truth = batch["keypoints"]
        hits, counts = pck_counts_tf(predicted, truth[..., :2], truth[..., 2] > 0, batch["normalizer"],
                                     self.threshold)
        return {"hits": hits, "counts": counts}

    def collect_tensors(self, batch: dict, outputs) -> dict:
        """COCO AP needs every instance's answer in the original image: decoded crop keypoints, their scores and
        the crop affine, gathered to the chief."""
        if self.metric != "coco_ap":
            return {}
        predicted, scores = self._decode_tf(outputs)
        return {"keypoints": predicted, "scores": scores, "affine": batch["affine"], "image_id": batch["image_id"],
                "box_score": batch["box_score"]}

    def metric_results(self, sums: dict[str, np.ndarray], collected: Optional[dict] = None) -> dict[str, Any]:
        """``{<pck|pckh>: mean over joints counted, "per_joint": {name: value}}``, plus ``ap``, ``ap50``, ``ap75``,
        ``ar`` (COCO keypoints, when the instances were collected)."""
        results = pck_summary(sums["hits"], sums["counts"], self.joint_names, metric=self.metric_key,
                              exclude_from_mean=self.info.get("exclude_from_mean", ()))
        if self.metric == "coco_ap" and collected:
            results = {**self.coco_metrics(collected), **results}
        return results

    def coco_metrics(self, collected: dict) -> dict[str, float]:
        """OKS AP through pycocotools from collected crop answers."""
        keypoints = self.to_image(collected["keypoints"], collected["scores"], collected["affine"])
        scores = instance_scores(keypoints[..., 2], collected["box_score"])
        results = coco_results(collected["image_id"], keypoints, scores)
        metrics = coco_keypoint_ap(self.info["annotation_file"], results, sigmas=self.info.get("sigmas"))
        return {key: metrics[key] for key in ("ap", "ap50", "ap75", "ar") if key in metrics}

    # ------------------------------------------------------------------------------------------ answers
    @staticmethod
    def to_image(keypoints: np.ndarray, scores: np.ndarray, affines) -> np.ndarray:
        """Crop answers ``(B, J, 2)`` + scores ``(B, J)`` -> ``(B, J, 3)`` x, y, score in the original image."""
        points = np.concatenate([np.asarray(keypoints, np.float32)[..., :2],
                                 np.asarray(scores, np.float32)[..., None]], axis=-1)
        return crop_to_image(points, np.asarray(affines, np.float64).reshape(-1, 2, 3))

    def decode(self, outputs, batch: dict) -> list[np.ndarray]:
        """Per example ``(J, 3)``: x, y in the original image and the heatmap peak as score."""
        heatmaps = np.asarray(final_output(outputs), np.float32)
        keypoints, scores = self.codec.decode(heatmaps)
        return list(self.to_image(keypoints, scores, batch["affine"]))

    def pictures(self, batch: dict, outputs) -> list[np.ndarray]:
        """Per example: the crop with the true skeleton | the crop with the predicted skeleton."""
        heatmaps = np.asarray(final_output(outputs), np.float32)
        predicted, scores = self.codec.decode(heatmaps)
        pictures = []
        for image, truth, points, score in zip(batch["image"], batch["keypoints"], predicted, scores):
            truth = np.concatenate([truth[:, :2], (truth[:, 2:3] > 0).astype(np.float32)], axis=1)
            answer = np.concatenate([points, score[:, None]], axis=1)
            image = to_uint8(image)
            # Small crops (64x64) are enlarged so the skeletons can be seen; pixel centres stay aligned.
            factor = max(1, int(np.ceil(256 / min(image.shape[:2]))))
            if factor > 1:
                image = cv2.resize(image, (image.shape[1] * factor, image.shape[0] * factor),
                                   interpolation=cv2.INTER_LINEAR)
                for points in (truth, answer):
                    points[:, :2] = (points[:, :2] + 0.5) * factor - 0.5
            pictures.append(side_by_side_pose(image, truth, answer, self.info))
        return pictures

    def write_report(self, results: dict, sums: dict, output_dir, samples=None) -> list:
        """``per_joint.txt`` (the table) and ``overlays/<name>.png`` (true | predicted skeletons)."""
        output_dir = Path(output_dir)
        written = [output_dir / "per_joint.txt"]
        write_text(written[0], self.format_results(results) + "\n")
        for name, batch, outputs in samples or ():
            path = output_dir / "overlays" / f"{Path(name).as_posix().replace('/', '_')}.png"
            write_png(path, self.pictures(batch, outputs)[0])
            written.append(path)
        return written

    @staticmethod
    def format_results(results: dict) -> str:
        """Per-joint accuracy then the mean (and COCO AP numbers when present)."""
        per_joint = results.get("per_joint", {})
        key = "pckh" if "pckh" in results else "pck"
        width = max([len(name) for name in per_joint] + [len("mean")])
        lines = [f"{'joint':<{width}}  {key.upper()}", f"{'-' * width}  ------"]
        for name, value in per_joint.items():
            lines.append(f"{name:<{width}}  " + ("   n/a" if value is None or value != value else f"{value:.4f}"))
        lines += [f"{'-' * width}  ------", f"{'mean':<{width}}  {results.get(key, float('nan')):.4f}"]
        for extra in ("ap", "ap50", "ap75", "ar"):
            if extra in results:
                lines.append(f"{extra.upper():<{width}}  {results[extra]:.4f}")
        return "\n".join(lines)

    # ------------------------------------------------------------------------------------------ export
    raw_output_name = "heatmaps"

    @property
    def serving_input_size(self) -> tuple[int, int]:
        """Exported pose models take person crops of ``data.input_size`` (the decoding maps heatmap cells to its
        pixels)."""
        return self.input_size

    def serving_outputs(self, heatmaps: tf.Tensor, images: tf.Tensor) -> dict[str, tf.Tensor]:
        """TF graph: ``keypoints`` (B, J, 2) in the input crop's pixels and their ``scores`` (B, J)."""
        keypoints, scores = self.codec.decode_tf(heatmaps)
        return {"keypoints": keypoints, "scores": scores}

    # ------------------------------------------------------------------------------------------ people in images
    def estimate_people(self, forward, image: np.ndarray, boxes: np.ndarray, batch_size: int = 16) -> np.ndarray:
        """Top-down pose of every person box of one image, in batches: the one implementation behind batch
        prediction and the video tool.

        Args:
            forward: ``fn(crops float32 (B, H, W, 3)) -> heatmaps`` (e.g. :class:`densevision.inference.predictor.
                Forward`, which applies ``test.flip_test``).
            image: uint8 ``(H, W, 3)`` RGB.
            boxes: ``(N, 4)`` ``[x, y, w, h]`` person boxes in image pixels.

        Returns:
            ``(N, J, 3)`` float32: x, y in image pixels and the heatmap peak as each joint's score.
        """
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        crops, affines = [], []
        for box in boxes:
            center, scale = topdown.box_to_center_scale(box, self.input_size)
            affine = topdown.crop_affine(center, scale, self.input_size)
            crops.append(topdown.warp_to_crop(image, affine, self.input_size))
            affines.append(affine)
        people = np.zeros((len(boxes), self.num_joints, 3), np.float32)
        for start in range(0, len(crops), max(1, batch_size)):
            chunk = np.stack(crops[start:start + batch_size]).astype(np.float32)
            heatmaps = np.asarray(final_output(forward(chunk)), np.float32)
            keypoints, scores = self.codec.decode(heatmaps)
            people[start:start + len(chunk)] = self.to_image(keypoints, scores, affines[start:start + len(chunk)])
        return people

    # ------------------------------------------------------------------------------------------ prediction
    def predict_image(self, forward: Forward, image: np.ndarray, options, key: str = "") -> dict[str, Any]:
        """``{"people": [{"box": [x, y, w, h], "score": float, "keypoints": (J, 3)}]}`` in image pixels, for the
        people :attr:`person_finder` finds (``key``: the input's relative path, how a boxes file names it).

        Raises:
            ValueError: no person finder was given to the task.
        """
        if self.person_finder is None:
            raise ValueError("pose task: no person finder; set task.person_finder (e.g. densevision.inference."
                             "people.person_finder(options)) before predicting whole images")
        boxes, box_scores = self.person_finder(image, key)
        keypoints = self.estimate_people(forward, image, boxes, getattr(options, "batch_size", 16))
        return {"people": [{"box": [float(v) for v in box], "score": float(score), "keypoints": points}
                           for box, score, points in zip(boxes, box_scores, keypoints)]}

    @classmethod
    def make_demo_data(cls, directory: str) -> dict[str, Any]:
        """Generated people-like figures with known keypoints in the COCO layout (17 joints)."""
        make_demo_coco_keypoints(directory)
        return {"data.root": str(directory), "data.name": "coco_keypoints", "model.num_joints": 17}


def person_record(box, box_score: float, keypoints, track_id: Optional[int] = None,
                  coco_layout: bool = False) -> dict[str, Any]:
    """The one per-person record of pose results, in the video JSON, ``predict``'s ``results.json`` and the Python
    API's answers alike::

        {"track_id": int | None,          # the video's track (None in still images)
         "box": [x, y, w, h],             # the person box the pose was estimated in, image pixels
         "box_score": float,              # the person finder's score for it (1.0 for --single / unscored boxes)
         "score": float,                  # box_score x mean joint score (COCO results' person score)
         "keypoints": [[x, y, s], ...]}   # J joints, image pixels, heatmap peaks as s

    With ``coco_layout`` (``results.json``) the keypoints are COCO results' flat ``[x1, y1, s1, x2, ...]``, the
    layout pycocotools' ``loadRes`` and ``COCOeval`` read; the keys are the same.

    Args:
        box: ``(4,)`` ``[x, y, w, h]``; box_score: the finder's score; keypoints: ``(J, 3)`` ``[x, y, score]``.
    """
    points = np.asarray(keypoints, np.float64).reshape(-1, 3)
    mean_score = float(points[:, 2].mean()) if len(points) else 0.0
    rounded = [[round(float(x), 2), round(float(y), 2), round(float(v), 4)] for x, y, v in points]
    return {"track_id": None if track_id is None else int(track_id),
            "box": [round(float(v), 2) for v in np.asarray(box).reshape(4)],
            "box_score": round(float(box_score), 4),
            "score": round(float(box_score) * mean_score, 4),
            "keypoints": [v for point in rounded for v in point] if coco_layout else rounded}


def load_image_boxes(path) -> dict[str, list]:
    """Person boxes per image, ``{key: [[x, y, w, h, score], ...]}`` (kept name): the boxes file read by the one
    parser, :func:`densevision.data.boxes.load_boxes_file` (every layout it accepts)."""
    return {key: [[*map(float, box), float(score)] for box, score in zip(*value)]
            for key, value in load_boxes_file(path).entries.items()}
