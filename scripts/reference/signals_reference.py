#!/usr/bin/env python3
"""Reference output of the models behind the new focus-score signals, for Rust tests.

Runs, with the Python TFLite interpreter (ai-edge-litert 2.1.4, builtin
kernels, no XNNPACK, one thread), on real images:

  * face_landmark.tflite (468 points) on the face region BlazeFace found,
  * iris_landmark.tflite on both eyes (the image's right eye mirrored),
  * palm_detection_lite.tflite on a square around the face,
  * face_detection_full_range.tflite on the whole frame,

and writes models/tests/fixtures/signals_reference.json: each crop's input
tensor (sum, sum of squares), the raw outputs and the decoded results.

    python3 -m venv /tmp/sigref-venv
    /tmp/sigref-venv/bin/pip install ai-edge-litert==2.1.4 numpy pillow
    /tmp/sigref-venv/bin/python scripts/reference/signals_reference.py

(used here: ai-edge-litert 2.1.4, numpy 2.4.6, pillow 13.0.0, Python 3.11.7; the output is deterministic).

`--video FILE` instead prints per-frame signals of a video (decoded by
ffmpeg to 320x240 RGB, as the agent analyses), to tune the thresholds of docs/SCORING.md.

Crops, spelled out so Rust reproduces them (models/src/roi.rs):

  * A region is a rotated square: centre (cx, cy) and side s in frame
    pixels, angle r (radians, y down; the region's x axis points along
    (cos r, sin r)).
  * Output pixel (u, v) of an N x N tensor samples the frame at
        a = ((u + 0.5) / N - 0.5) * s,  b = ((v + 0.5) / N - 0.5) * s
        x = cx + a cos r - b sin r - 0.5,  y = cy + a sin r + b cos r - 0.5
    (pixel-index coordinates), bilinear; outside the frame the nearest
    edge pixel ("replicate", landmarks and iris) or black ("zero", palm).
  * Mirrored crops (the image's right eye for the iris model) use N - 1 - u.
  * Values v / 255 (range [0, 1]) or v / 127.5 - 1 (range [-1, 1]).
  * Points the model returns in tensor pixels (px, py) map back by the
    same formula with a = (px / N - 0.5) s, b = (py / N - 0.5) s (no -0.5).

Regions, as MediaPipe's graphs make them:
  * face landmarks: BlazeFace's box centre, rotation from the right eye to
    the left eye keypoint, side 1.5 x the box's longer side; range [0, 1].
  * iris: from landmarks 33 -> 133 (image left eye) and 362 -> 263 (image
    right eye, mirrored): centre the two corners' midpoint, rotation along
    them, side 2.3 x the longer side of their bounding box; range [0, 1].
  * palm: the face box centre, no rotation, side 3 x the face box's longer
    side, black outside the frame; range [0, 1]. SSD decoding with 2016
    anchors (strides 8, 16, 16, 16), 18 values (box + 7 keypoints), scale 192.
  * full range: the whole frame as a region (its centre, side the longer
    side, no rotation, black outside), range [-1, 1]; 2304 anchors (one layer, stride 4); min score 0.6.
"""

import argparse
import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(__file__))
import blazeface_reference as bf  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def model(name):
    return os.path.join(ROOT, "models", name)


def interp(path):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_path=path, num_threads=1,
                     experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    it.allocate_tensors()
    return it


def invoke(it, tensor):
    it.set_tensor(it.get_input_details()[0]["index"], tensor.astype(np.float32))
    it.invoke()
    return [it.get_tensor(d["index"]).reshape(-1).astype(np.float64) for d in it.get_output_details()]


# --- crops -------------------------------------------------------------------
def crop(img, cx, cy, side, angle, n, border, value_range, mirror=False):
    """img float64 [h, w, 3] -> float32 [1, n, n, 3]."""
    h, w = img.shape[:2]
    u = np.arange(n, dtype=np.float64)
    if mirror:
        u = n - 1 - u
    a = ((u + 0.5) / n - 0.5) * side
    b = ((np.arange(n, dtype=np.float64) + 0.5) / n - 0.5) * side
    A, B = np.meshgrid(a, b)
    c, s = math.cos(angle), math.sin(angle)
    x = cx + A * c - B * s - 0.5
    y = cy + A * s + B * c - 0.5
    x0 = np.floor(x).astype(np.int64)
    y0 = np.floor(y).astype(np.int64)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]

    def px(yy, xx):
        if border == "replicate":
            return img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]
        inside = ((yy >= 0) & (yy < h) & (xx >= 0) & (xx < w))[..., None]
        return np.where(inside, img[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)], 0.0)

    top = px(y0, x0) * (1 - fx) + px(y0, x0 + 1) * fx
    bot = px(y0 + 1, x0) * (1 - fx) + px(y0 + 1, x0 + 1) * fx
    v = top * (1 - fy) + bot * fy
    v = v / 255.0 if value_range == "unit" else v / 127.5 - 1.0  # "signed"
    return v.astype(np.float32)[None]


def to_frame(px, py, n, cx, cy, side, angle, mirror=False):
    if mirror:
        px = n - px
    a = (px / n - 0.5) * side
    b = (py / n - 0.5) * side
    c, s = math.cos(angle), math.sin(angle)
    return cx + a * c - b * s, cy + a * s + b * c


def tensor_stats(t):
    t64 = t.astype(np.float64)
    return dict(sum=float(t64.sum()), sum_of_squares=float((t64 ** 2).sum()))


# --- BlazeFace (short range) on the whole frame ----------------------------
def blazeface(it, anchors, img):
    h, w = img.shape[:2]
    t, lb = bf.letterbox(img)
    dets, _, _ = bf.detect(it, anchors, t)
    return [bf.unletterbox(d, lb, w, h) for d in dets]


# --- face landmarks ------------------------------------------------------------
def face_region(det):
    cx = (det["xmin"] + det["xmax"]) / 2
    cy = (det["ymin"] + det["ymax"]) / 2
    side = 1.5 * max(det["xmax"] - det["xmin"], det["ymax"] - det["ymin"])
    (rx, ry), (lx, ly) = det["keypoints"][0], det["keypoints"][1]
    return cx, cy, side, math.atan2(ly - ry, lx - rx)


def landmarks(it, img, region):
    t = crop(img, *region, 192, "replicate", "unit")
    outs = invoke(it, t)
    pts = next(o for o in outs if o.size == 1404).reshape(468, 3)
    flag = next(o for o in outs if o.size == 1)[0]
    cx, cy, side, ang = region
    frame = np.array([(*to_frame(x, y, 192, cx, cy, side, ang), z * side / 192) for x, y, z in pts])
    return t, pts, flag, frame


# --- iris ----------------------------------------------------------------------------
EYES = [(33, 133, False), (362, 263, True)]


def eye_region(lm, a, b):
    (ax, ay), (bx, by) = lm[a][:2], lm[b][:2]
    side = 2.3 * max(abs(bx - ax), abs(by - ay))
    return (ax + bx) / 2, (ay + by) / 2, side, math.atan2(by - ay, bx - ax)


def iris(it, img, lm):
    out = []
    for a, b, mirror in EYES:
        region = eye_region(lm, a, b)
        t = crop(img, *region, 64, "replicate", "unit", mirror=mirror)
        outs = invoke(it, t)
        contour = next(o for o in outs if o.size == 213)
        ir = next(o for o in outs if o.size == 15).reshape(5, 3)
        centre = to_frame(ir[0][0], ir[0][1], 64, *region, mirror=mirror)
        out.append(dict(region=region, tensor=t, iris=ir, contour=contour, centre=centre))
    return out


def gaze(lm, eyes):
    """Horizontal and vertical iris offset from the eye centre, in eye widths."""
    hs, vs = [], []
    for (a, b, _), e in zip(EYES, eyes):
        p, q = np.array(lm[a][:2]), np.array(lm[b][:2])
        axis = q - p
        width = np.linalg.norm(axis)
        d = np.array(e["centre"]) - (p + q) / 2
        hs.append(float(d @ axis) / width / width)
        vs.append(float(axis[0] * d[1] - axis[1] * d[0]) / width / width)
    return sum(hs) / 2, sum(vs) / 2


# --- SSD detectors (palm, full range) ----------------------------------------------
PALM_ANCHORS = dict(bf.ANCHOR_OPTS, input_size_height=192, input_size_width=192)
FULL_ANCHORS = dict(num_layers=1, min_scale=0.1484375, max_scale=0.75, input_size_height=192,
                    input_size_width=192, anchor_offset_x=0.5, anchor_offset_y=0.5, strides=[4],
                    aspect_ratios=[1.0], fixed_anchor_size=True, interpolated_scale_aspect_ratio=0.0,
                    reduce_boxes_in_lowest_layer=False)


def ssd_anchors(opts, count):
    saved = bf.NUM_BOXES
    bf.NUM_BOXES = count
    try:
        return bf.generate_anchors(opts)
    finally:
        bf.NUM_BOXES = saved


def ssd_decode(reg, logits, anchors, n, ncoords, nkp, min_score):
    reg = reg.reshape(-1, ncoords)
    ax, ay = anchors[:, 0], anchors[:, 1]
    xc = reg[:, 0] / n + ax
    yc = reg[:, 1] / n + ay
    w = reg[:, 2] / n
    h = reg[:, 3] / n
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)
    kps = np.stack([np.stack([reg[:, 4 + 2 * k] / n + ax, reg[:, 5 + 2 * k] / n + ay], axis=1)
                    for k in range(nkp)], axis=1)
    scores = 1 / (1 + np.exp(-np.clip(logits, -100, 100)))
    keep = np.nonzero(scores >= min_score)[0]
    dets = [dict(score=float(scores[i]), box=boxes[i], kps=kps[i], anchor=int(i)) for i in keep]
    return bf.weighted_nms(dets)


def palm_region(det):
    cx = (det["xmin"] + det["xmax"]) / 2
    cy = (det["ymin"] + det["ymax"]) / 2
    return cx, cy, 3.0 * max(det["xmax"] - det["xmin"], det["ymax"] - det["ymin"]), 0.0


def palms(it, anchors, img, region, min_score=0.5):
    t = crop(img, *region, 192, "zero", "unit")
    outs = invoke(it, t)
    reg = next(o for o in outs if o.size == 2016 * 18)
    logits = next(o for o in outs if o.size == 2016)
    dets = ssd_decode(reg, logits, anchors, 192.0, 18, 7, min_score)
    boxes = []
    for d in dets:
        x0, y0 = to_frame(d["box"][0] * 192, d["box"][1] * 192, 192, *region)
        x1, y1 = to_frame(d["box"][2] * 192, d["box"][3] * 192, 192, *region)
        boxes.append(dict(score=d["score"], box=[x0, y0, x1, y1]))
    return t, reg, logits, boxes


def full_range(it, anchors, img, min_score=0.6):
    h, w = img.shape[:2]
    region = (w / 2, h / 2, max(w, h), 0.0)
    t = crop(img, *region, 192, "zero", "signed")
    outs = invoke(it, t)
    reg = next(o for o in outs if o.size == 2304 * 16)
    logits = next(o for o in outs if o.size == 2304)
    dets = ssd_decode(reg, logits, anchors, 192.0, 16, 6, min_score)
    boxes = []
    for d in dets:
        x0, y0 = to_frame(d["box"][0] * 192, d["box"][1] * 192, 192, *region)
        x1, y1 = to_frame(d["box"][2] * 192, d["box"][3] * 192, 192, *region)
        boxes.append(dict(score=d["score"], box=[x0, y0, x1, y1]))
    return t, reg, logits, boxes


# --- derived signals ---------------------------------------------------------------
def mouth_opening(lm):
    return float(np.linalg.norm(lm[13][:2] - lm[14][:2]) / np.linalg.norm(lm[10][:2] - lm[152][:2]))


def landmark_yaw(lm):
    """Degrees from the cheek edges' depth: 0 facing the camera, +-90 in profile."""
    d = lm[454] - lm[234]
    return math.degrees(math.atan2(-d[2], d[0]))


def load_rgb(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


def ffmpeg_frames(path, w, h, vf=None, count=None):
    cmd = ["ffmpeg", "-v", "error", "-i", path]
    if vf:
        cmd += ["-vf", vf, "-fps_mode", "passthrough"]
    if count:
        cmd += ["-frames:v", str(count)]
    cmd += ["-f", "rawvideo", "-pix_fmt", "rgb24", "-"]
    raw = subprocess.run(cmd, check=True, capture_output=True).stdout
    return [np.frombuffer(raw[i:i + w * h * 3], np.uint8).reshape(h, w, 3).astype(np.float64)
            for i in range(0, len(raw) - w * h * 3 + 1, w * h * 3)]


class Models:
    def __init__(self):
        self.bf = interp(model("face_detection_short_range.tflite"))
        self.bf_anchors = bf.generate_anchors(bf.ANCHOR_OPTS)
        self.lm = interp(model("face_landmark.tflite"))
        self.iris = interp(model("iris_landmark.tflite"))
        self.palm = interp(model("palm_detection_lite.tflite"))
        self.palm_anchors = ssd_anchors(PALM_ANCHORS, 2016)
        self.full = interp(model("face_detection_full_range.tflite"))
        self.full_anchors = ssd_anchors(FULL_ANCHORS, 2304)


def per_frame(m, img):
    faces = blazeface(m.bf, m.bf_anchors, img)
    row = dict(faces=len(faces))
    _, _, _, full = full_range(m.full, m.full_anchors, img)
    row["full_range_faces"] = len(full)
    if not faces:
        return row
    region = face_region(faces[0])
    _, _, flag, lm = landmarks(m.lm, img, region)
    eyes = iris(m.iris, img, lm)
    _, _, _, pb = palms(m.palm, m.palm_anchors, img, palm_region(faces[0]))
    row.update(face_flag=float(1 / (1 + math.exp(-flag))), mouth=mouth_opening(lm),
               lm_yaw=landmark_yaw(lm), gaze=gaze(lm, eyes), palms=[(round(p["score"], 2), [round(v) for v in p["box"]]) for p in pb])
    return row


def reference_for(m, name, img):
    faces = blazeface(m.bf, m.bf_anchors, img)
    assert faces, f"{name}: no face"
    region = face_region(faces[0])
    t, raw, flag, lm = landmarks(m.lm, img, region)
    eyes = iris(m.iris, img, lm)
    g = gaze(lm, eyes)
    pr = palm_region(faces[0])
    pt, preg, plog, pboxes = palms(m.palm, m.palm_anchors, img, pr)
    ptop = np.argsort(-plog, kind="stable")[:5]
    ft, freg, flog, fboxes = full_range(m.full, m.full_anchors, img)
    ftop = np.argsort(-flog, kind="stable")[:5]
    return dict(
        face=faces[0],
        landmarks=dict(region=region, input=tensor_stats(t), raw=[float(v) for v in raw.reshape(-1)],
                       face_flag_logit=float(flag), frame_points=[[float(v) for v in p] for p in lm[:: 1]],
                       mouth_opening=mouth_opening(lm), yaw_deg=landmark_yaw(lm)),
        iris=[dict(region=e["region"], input=tensor_stats(e["tensor"]),
                   iris=[float(v) for v in e["iris"].reshape(-1)],
                   contour=[float(v) for v in e["contour"]], centre=list(e["centre"])) for e in eyes],
        gaze=dict(horizontal=g[0], vertical=g[1]),
        palm=dict(region=pr, input=tensor_stats(pt), detections=pboxes,
                  top_raw_anchors=[dict(anchor=int(i), raw_score=float(plog[i]),
                                        regressors=[float(v) for v in preg.reshape(-1, 18)[i]]) for i in ptop]),
        full_range=dict(input=tensor_stats(ft), detections=fboxes,
                        top_raw_anchors=[dict(anchor=int(i), raw_score=float(flog[i]),
                                              regressors=[float(v) for v in freg.reshape(-1, 16)[i]]) for i in ftop]),
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--video")
    ap.add_argument("--image", action="append", default=[])
    ap.add_argument("--out", default=os.path.join(ROOT, "models/tests/fixtures/signals_reference.json"))
    args = ap.parse_args()
    m = Models()
    if args.video or args.image:
        frames = [load_rgb(p) for p in args.image]
        if args.video:
            frames += ffmpeg_frames(args.video, 320, 240, vf="scale=320:240")
        for i, f in enumerate(frames):
            print(i, json.dumps(per_frame(m, f)))
        return
    images = {
        "astronaut": load_rgb(os.path.join(ROOT, "assets/astronaut.png")),
        # carphone frame 60 (mouth wide open), 176x144, as models/tests/common decodes it.
        "carphone_60": ffmpeg_frames(os.path.join(ROOT, "assets/carphone_pristine.mp4"), 176, 144,
                                     vf="select=not(mod(n\\,4))", count=16)[15],
    }
    out = dict(
        interpreter=dict(package="ai-edge-litert", version=bf.package_version("ai-edge-litert"),
                         op_resolver="BUILTIN_WITHOUT_DEFAULT_DELEGATES (no XNNPACK)", num_threads=1),
        models={n: hashlib.sha256(open(model(n), "rb").read()).hexdigest() for n in
                ["face_landmark.tflite", "iris_landmark.tflite", "palm_detection_lite.tflite",
                 "face_detection_full_range.tflite"]},
        images={k: reference_for(m, k, v) for k, v in images.items()},
    )
    with open(args.out, "w") as f:
        json.dump(out, f, indent=None, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
        f.write("\n")
    print(f"wrote {os.path.relpath(args.out, ROOT)}", file=sys.stderr)
    for k, v in out["images"].items():
        print(k, dict(mouth=v["landmarks"]["mouth_opening"], yaw=v["landmarks"]["yaw_deg"],
                      flag=v["landmarks"]["face_flag_logit"], gaze=v["gaze"],
                      palms=v["palm"]["detections"], full=v["full_range"]["detections"]))


if __name__ == "__main__":
    main()
