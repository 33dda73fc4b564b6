#!/usr/bin/env python3
"""Reference output of the BlazeFace short-range face detector, for Rust tests.

Runs models/face_detection_short_range.tflite with the Python TFLite
interpreter, decodes it the way MediaPipe's face_detection_short_range graph
does, and writes models/tests/fixtures/blazeface_reference.json.

pip requirements (install into a throwaway venv, not system-wide):

    ai-edge-litert==2.1.4      # from ai_edge_litert.interpreter import Interpreter
    numpy                      # used: 2.4.6
    pillow                     # used: 13.0.0
    # fallback if ai-edge-litert will not install: tflite-runtime

Regenerate (from the repo root):

    python3 -m venv /tmp/bfref-venv
    /tmp/bfref-venv/bin/pip install ai-edge-litert==2.1.4 numpy pillow
    /tmp/bfref-venv/bin/python scripts/reference/blazeface_reference.py

Preprocessing, spelled out so Rust can reproduce the input tensor bit-for-bit
(within float rounding; the JSON carries sum / sum of squares to check):

  * image -> RGB float64 in 0..255 (PNG: alpha dropped; lfw: gray*255, channel
    repeated three times; no rounding to u8 anywhere).
  * letterbox into 128x128: scale = 128 / max(w, h); nw = round(w*scale),
    nh = round(h*scale); pad_x = (128 - nw) // 2, pad_y = (128 - nh) // 2.
    Canvas value outside the image: 0 (black) -> -1.0 after normalisation.
  * resize = plain bilinear, half-pixel centres, NO antialiasing (what
    MediaPipe's ImageToTensorCalculator does with OpenCV INTER_LINEAR):
        sx = (ox + 0.5) * (w / nw) - 0.5, clamped to [0, w-1]   (same for y)
        x0 = floor(sx), x1 = min(x0 + 1, w - 1), fx = sx - x0
        value = lerp(lerp(p[y0,x0], p[y0,x1], fx), lerp(p[y1,x0], p[y1,x1], fx), fy)
  * normalise: v / 127.5 - 1, then cast to float32.

Interpreter: the builtin CPU kernels WITHOUT the default XNNPACK delegate
(OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES), which is what a plain
TFLite C API build (e.g. the Rust `tflite` crate) runs.
"""

import argparse
import hashlib
import json
import math
import os
import sys

import numpy as np
from PIL import Image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SIZE = 128

# --- MediaPipe face_detection_short_range options ---------------------------
ANCHOR_OPTS = dict(
    num_layers=4,
    min_scale=0.1484375,
    max_scale=0.75,
    input_size_height=SIZE,
    input_size_width=SIZE,
    anchor_offset_x=0.5,
    anchor_offset_y=0.5,
    strides=[8, 16, 16, 16],
    aspect_ratios=[1.0],
    fixed_anchor_size=True,
    interpolated_scale_aspect_ratio=1.0,
    reduce_boxes_in_lowest_layer=False,
)
NUM_BOXES = 896
NUM_COORDS = 16
NUM_KEYPOINTS = 6
X_SCALE = Y_SCALE = W_SCALE = H_SCALE = 128.0
SCORE_CLIP = 100.0
MIN_SCORE = 0.5
MIN_SUPPRESSION = 0.3
KEYPOINT_NAMES = ["right_eye", "left_eye", "nose_tip", "mouth_center",
                  "right_ear_tragion", "left_ear_tragion"]


def load_interpreter(model_path, xnnpack=False):
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
        pkg = "ai-edge-litert"
    except ImportError:  # fallback
        from tflite_runtime.interpreter import Interpreter, OpResolverType
        pkg = "tflite-runtime"
    kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    it = Interpreter(model_path=model_path, num_threads=1, experimental_op_resolver_type=kind)
    it.allocate_tensors()
    return it, pkg


def package_version(pkg):
    try:
        from importlib.metadata import version
        return version(pkg)
    except Exception:
        return "unknown"


def calc_scale(min_scale, max_scale, stride_index, num_strides):
    if num_strides == 1:
        return (min_scale + max_scale) * 0.5
    return min_scale + (max_scale - min_scale) * stride_index / (num_strides - 1.0)


def generate_anchors(o):
    """Port of mediapipe/calculators/tflite/ssd_anchors_calculator.cc.
    Returns float64 array [N, 4] of (x_center, y_center, w, h)."""
    anchors = []
    strides = o["strides"]
    n = len(strides)
    layer_id = 0
    while layer_id < o["num_layers"]:
        heights, widths, ars, scales = [], [], [], []
        last = layer_id
        while last < n and strides[last] == strides[layer_id]:
            scale = calc_scale(o["min_scale"], o["max_scale"], last, n)
            if last == 0 and o["reduce_boxes_in_lowest_layer"]:
                ars += [1.0, 2.0, 0.5]
                scales += [0.1, scale, scale]
            else:
                for ar in o["aspect_ratios"]:
                    ars.append(ar)
                    scales.append(scale)
                if o["interpolated_scale_aspect_ratio"] > 0.0:
                    nxt = 1.0 if last == n - 1 else calc_scale(o["min_scale"], o["max_scale"], last + 1, n)
                    scales.append(math.sqrt(scale * nxt))
                    ars.append(o["interpolated_scale_aspect_ratio"])
            last += 1
        for ar, sc in zip(ars, scales):
            r = math.sqrt(ar)
            heights.append(sc / r)
            widths.append(sc * r)
        stride = strides[layer_id]
        fh = math.ceil(o["input_size_height"] / stride)
        fw = math.ceil(o["input_size_width"] / stride)
        for y in range(fh):
            for x in range(fw):
                for a in range(len(heights)):
                    xc = (x + o["anchor_offset_x"]) / fw
                    yc = (y + o["anchor_offset_y"]) / fh
                    if o["fixed_anchor_size"]:
                        anchors.append((xc, yc, 1.0, 1.0))
                    else:
                        anchors.append((xc, yc, widths[a], heights[a]))
        layer_id = last
    a = np.array(anchors, dtype=np.float64)
    assert a.shape == (NUM_BOXES, 4), a.shape
    return a


# --- preprocessing ------------------------------------------------------------
def bilinear_resize(img, nw, nh):
    """img float64 [h, w, c] -> [nh, nw, c]; half-pixel centres, no antialias."""
    h, w = img.shape[:2]

    def axis(n_out, n_in):
        s = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
        s = np.clip(s, 0.0, n_in - 1)
        i0 = np.floor(s).astype(np.int64)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, s - i0

    x0, x1, fx = axis(nw, w)
    y0, y1, fy = axis(nh, h)
    fx = fx[None, :, None]
    fy = fy[:, None, None]
    top = img[y0][:, x0] * (1 - fx) + img[y0][:, x1] * fx
    bot = img[y1][:, x0] * (1 - fx) + img[y1][:, x1] * fx
    return top * (1 - fy) + bot * fy


def letterbox(img, pad_value=0.0):
    """img float64 RGB 0..255 [h, w, 3] -> (float32 tensor [1,128,128,3] in [-1,1], params)."""
    h, w = img.shape[:2]
    scale = SIZE / max(w, h)
    nw, nh = int(round(w * scale)), int(round(h * scale))
    pad_x, pad_y = (SIZE - nw) // 2, (SIZE - nh) // 2
    canvas = np.full((SIZE, SIZE, 3), pad_value, dtype=np.float64)
    canvas[pad_y:pad_y + nh, pad_x:pad_x + nw] = bilinear_resize(img, nw, nh)
    tensor = (canvas / 127.5 - 1.0).astype(np.float32)[None]
    params = dict(scale=scale, resized_width=nw, resized_height=nh, pad_x=pad_x, pad_y=pad_y,
                  pad_value_rgb=pad_value, pad_value_normalised=pad_value / 127.5 - 1.0)
    return tensor, params


def place_on_canvas(img, side, canvas_value):
    """Upscale img (bilinear) to side x side and centre it on a SIZE x SIZE canvas."""
    canvas = np.full((SIZE, SIZE, 3), canvas_value, dtype=np.float64)
    off = (SIZE - side) // 2
    canvas[off:off + side, off:off + side] = bilinear_resize(img, side, side)
    return (canvas / 127.5 - 1.0).astype(np.float32)[None]


def load_png(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)


# --- model + decoding ---------------------------------------------------------
def run(it, tensor):
    inp = it.get_input_details()[0]
    outs = {d["name"]: d["index"] for d in it.get_output_details()}
    it.set_tensor(inp["index"], tensor)
    it.invoke()
    reg = it.get_tensor(outs["regressors"])[0].copy()        # [896, 16]
    cls = it.get_tensor(outs["classificators"])[0, :, 0].copy()  # [896]
    return reg, cls


def decode(reg, cls, anchors):
    """Port of TensorsToDetectionsCalculator. Normalised coords in the 128x128 tensor."""
    reg = reg.astype(np.float64)
    ax, ay, aw, ah = anchors.T
    xc = reg[:, 0] / X_SCALE * aw + ax
    yc = reg[:, 1] / Y_SCALE * ah + ay
    w = reg[:, 2] / W_SCALE * aw
    h = reg[:, 3] / H_SCALE * ah
    boxes = np.stack([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2], axis=1)  # xmin,ymin,xmax,ymax
    kps = np.empty((NUM_BOXES, NUM_KEYPOINTS, 2))
    for k in range(NUM_KEYPOINTS):
        kps[:, k, 0] = reg[:, 4 + 2 * k] / X_SCALE * aw + ax
        kps[:, k, 1] = reg[:, 4 + 2 * k + 1] / Y_SCALE * ah + ay
    scores = 1.0 / (1.0 + np.exp(-np.clip(cls.astype(np.float64), -SCORE_CLIP, SCORE_CLIP)))
    keep = np.nonzero(scores >= MIN_SCORE)[0]
    return [dict(score=float(scores[i]), box=boxes[i], kps=kps[i], anchor=int(i)) for i in keep]


def iou(a, b):
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def weighted_nms(dets):
    """Port of NonMaxSuppressionCalculator WEIGHTED (IoU)."""
    remained = sorted(range(len(dets)), key=lambda i: -dets[i]["score"])  # stable
    out = []
    while remained:
        top = dets[remained[0]]
        cands, rest = [], []
        for i in remained:
            (cands if iou(dets[i]["box"], top["box"]) > MIN_SUPPRESSION else rest).append(i)
        total = sum(dets[i]["score"] for i in cands)
        box = sum(dets[i]["box"] * dets[i]["score"] for i in cands) / total
        kps = sum(dets[i]["kps"] * dets[i]["score"] for i in cands) / total
        out.append(dict(score=top["score"], box=box, kps=kps, anchor=top["anchor"],
                        cluster_size=len(cands)))
        if len(rest) == len(remained):
            break
        remained = rest
    return out


def detect(it, anchors, tensor):
    reg, cls = run(it, tensor)
    return weighted_nms(decode(reg, cls, anchors)), reg, cls


def unletterbox(d, p, img_w, img_h):
    """Normalised tensor coords -> original image pixels."""
    sx, sy = img_w / p["resized_width"], img_h / p["resized_height"]
    fx = lambda v: (v * SIZE - p["pad_x"]) * sx
    fy = lambda v: (v * SIZE - p["pad_y"]) * sy
    b = d["box"]
    return dict(
        score=d["score"],
        xmin=fx(b[0]), ymin=fy(b[1]), xmax=fx(b[2]), ymax=fy(b[3]),
        keypoints=[[fx(x), fy(y)] for x, y in d["kps"]],
        keypoint_names=KEYPOINT_NAMES,
        normalised_tensor_box=[float(v) for v in b],
        top_anchor=d["anchor"],
        cluster_size=d["cluster_size"],
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=os.path.join(ROOT, "models/face_detection_short_range.tflite"))
    ap.add_argument("--assets", default=os.path.join(ROOT, "assets"))
    ap.add_argument("--out", default=os.path.join(ROOT, "models/tests/fixtures/blazeface_reference.json"))
    args = ap.parse_args()

    it, pkg = load_interpreter(args.model)
    anchors = generate_anchors(ANCHOR_OPTS)

    # --- astronaut: full reference ---
    img = load_png(os.path.join(args.assets, "astronaut.png"))
    ih, iw = img.shape[:2]
    tensor, lb = letterbox(img)
    dets, reg, cls = detect(it, anchors, tensor)
    t64 = tensor.astype(np.float64)
    top5 = np.argsort(-cls, kind="stable")[:5]

    # same tensor through the XNNPACK delegate, for information only
    itx, _ = load_interpreter(args.model, xnnpack=True)
    regx, clsx = run(itx, tensor)

    astronaut = dict(
        file="assets/astronaut.png",
        width=iw, height=ih,
        letterbox=lb,
        input_tensor=dict(
            shape=[1, SIZE, SIZE, 3], dtype="float32", layout="NHWC RGB",
            sum=float(t64.sum()), sum_of_squares=float((t64 ** 2).sum()),
            min=float(t64.min()), max=float(t64.max()),
            sha256_f32_le=hashlib.sha256(tensor.astype("<f4").tobytes()).hexdigest(),
            samples={f"{y},{x}": [float(v) for v in tensor[0, y, x]]
                     for y, x in [(0, 0), (32, 64), (64, 64), (127, 127)]},
        ),
        detections=[unletterbox(d, lb, iw, ih) for d in dets],
        top_raw_anchors=[dict(anchor=int(i), raw_score=float(cls[i]),
                              regressors=[float(v) for v in reg[i]]) for i in top5],
        xnnpack_max_abs_diff=dict(regressors=float(np.abs(reg - regx).max()),
                                  classificators=float(np.abs(cls - clsx).max())),
    )

    # --- counts ---
    counts = {}
    for name in ["coffee", "chelsea"]:
        im = load_png(os.path.join(args.assets, f"{name}.png"))
        t, p = letterbox(im)
        d, _, c = detect(it, anchors, t)
        counts[name] = dict(detections=len(d), max_score=float(1 / (1 + np.exp(-c.max()))),
                            width=im.shape[1], height=im.shape[0])

    lfw = np.load(os.path.join(args.assets, "lfw_subset.npy"))
    assert lfw.shape == (200, 25, 25), lfw.shape
    crops = [np.repeat(c[:, :, None] * 255.0, 3, axis=2) for c in lfw]
    variants = {
        "letterbox_128": dict(
            description="25x25 crop bilinear-upscaled to fill 128x128 (letterbox, no padding)",
            make=lambda c: letterbox(c)[0]),
    }
    for canvas_name, canvas_value in (("grey", 128.0), ("black", 0.0)):
        for side in (64, 100):
            variants[f"{canvas_name}_canvas_{side}"] = dict(
                description=f"25x25 crop bilinear-upscaled to {side}x{side}, centred at offset "
                            f"{(SIZE - side) // 2} on a 128x128 canvas of RGB {canvas_value:g} ({canvas_name})",
                make=lambda c, s=side, v=canvas_value: place_on_canvas(c, s, v))
    lfw_counts = {}
    for key, v in variants.items():
        hits, best = [], []
        for c in crops:
            d, _, cl = detect(it, anchors, v["make"](c))
            hits.append(len(d) > 0)
            best.append(float(1.0 / (1.0 + np.exp(-np.clip(cl.max(), -SCORE_CLIP, SCORE_CLIP)))))
        faces, nonfaces = sum(hits[:100]), sum(hits[100:])
        lfw_counts[key] = dict(description=v["description"],
                               faces_detected_of_100=int(faces),
                               nonfaces_detected_of_100=int(nonfaces),
                               meets_target=bool(faces >= 95 and nonfaces <= 5),
                               lowest_face_max_score=min(best[:100]),
                               highest_nonface_max_score=max(best[100:]),
                               missed_face_indices=[i for i in range(100) if not hits[i]],
                               detected_nonface_indices=[i for i in range(100, 200) if hits[i]])
    counts["lfw_subset"] = dict(
        file="assets/lfw_subset.npy",
        note="(200,25,25) float64 gray in [0,1]; first 100 faces, last 100 non-faces; "
             "gray*255 repeated to RGB; a crop counts if it yields >=1 detection after NMS",
        variants=lfw_counts)

    out = dict(
        model="models/face_detection_short_range.tflite",
        model_sha256=hashlib.sha256(open(args.model, "rb").read()).hexdigest(),
        interpreter=dict(package=pkg, version=package_version(pkg),
                         op_resolver="BUILTIN_WITHOUT_DEFAULT_DELEGATES (no XNNPACK)",
                         num_threads=1),
        numpy_version=np.__version__,
        pillow_version=Image.__version__,
        preprocessing=dict(
            color="RGB, alpha dropped, float 0..255, never rounded to u8",
            resize="bilinear, half-pixel centres, no antialias: src = (dst+0.5)*(in/out)-0.5, clamped to [0,in-1]",
            letterbox="scale=128/max(w,h); nw=round(w*scale), nh=round(h*scale); pad_x=(128-nw)//2, pad_y=(128-nh)//2; pad RGB 0",
            normalise="v/127.5 - 1, float32",
        ),
        decoding=dict(
            anchors=ANCHOR_OPTS, num_anchors=NUM_BOXES,
            box_order="raw[0..4] = x_center, y_center, w, h (reverse_output_order)",
            scales=dict(x=X_SCALE, y=Y_SCALE, w=W_SCALE, h=H_SCALE),
            score="sigmoid(clip(raw, -100, 100))", min_score=MIN_SCORE,
            nms="WEIGHTED, IoU > 0.3 joins the cluster of the top-scoring remaining box; "
                "box and keypoints = score-weighted mean over the cluster (incl. top); score = top score",
            unletterbox="x_px = (x_norm*128 - pad_x) * w/nw ; y_px = (y_norm*128 - pad_y) * h/nh",
        ),
        astronaut=astronaut,
        counts=counts,
    )
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o))
        f.write("\n")
    print(f"wrote {os.path.relpath(args.out, ROOT)}", file=sys.stderr)
    print(json.dumps(dict(detections=astronaut["detections"], counts=counts), indent=1))


if __name__ == "__main__":
    main()
