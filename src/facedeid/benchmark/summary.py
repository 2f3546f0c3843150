"""Summary of a benchmark run: medians over repeats, ratios to eager, FLOPs shares, batching and per-step times."""

from __future__ import annotations

import statistics


def _median(values) -> float:
    values = [v for v in values if v == v]
    return float(statistics.median(values)) if values else float("nan")


def summarize(result: dict) -> dict:
    """Medians over repeats per row; ratio to eager computed within each repeat, then the median taken."""
    runs = result["runs"]
    eager_fps = {r["repeat"]: r["fps"] for r in runs if r["label"] == "eager"}
    rows = {}
    for r in runs:
        if r["mode"] == "hardware":
            continue
        rows.setdefault(r["label"], []).append(r)
    table = []
    for label, group in rows.items():
        ratios = [r["fps"] / eager_fps[r["repeat"]] for r in group if r["repeat"] in eager_fps]
        server_peak = [r.get("server_memory", {}).get("peak_mb") for r in group]
        table.append({
            "label": label, "repeats": len(group),
            "fps": _median(r["fps"] for r in group), "faces_per_s": _median(r["faces_per_s"] for r in group),
            "faces_per_frame": group[0]["faces"] / group[0]["frames"],
            "p50_ms": _median(r["p50_ms"] for r in group), "p95_ms": _median(r["p95_ms"] for r in group),
            "client_peak_mb": max(r["client_peak_mb"] for r in group),
            "server_peak_mb": max((v for v in server_peak if v), default=None),
            "ratio_to_eager": _median(ratios) if ratios else None,
            "fps_all": [round(r["fps"], 3) for r in group],
        })
    hardware = [r for r in runs if r["mode"] == "hardware"]
    # peak = the best any repeat reached (a busy neighbour can only make a matmul slower, never faster)
    peaks = {t: max(r["flops_per_s"] for r in hardware if r["label"] == "peak" and r["threads"] == t)
             for t in sorted({r["threads"] for r in hardware if r["label"] == "peak"})}
    cfg = result["config"]
    peak = peaks.get(cfg["torch_threads"], float("nan"))
    peak_inproc = peaks.get(cfg["inproc_threads"], float("nan"))
    generators = []
    for name in dict.fromkeys(r["label"] for r in hardware if r["label"] != "peak"):
        group = [r for r in hardware if r["label"] == name]
        eager = _median(r["eager_flops_per_s"] for r in group)
        onnx = _median(r["onnxruntime_flops_per_s"] for r in group)
        generators.append({"generator": name, "trained": group[0].get("trained"),
                           "gflops_per_face": group[0]["flops_per_face"] / 1e9,
                           "eager_ms_per_face": _median(r["eager_s_per_face"] for r in group) * 1e3,
                           "onnxruntime_ms_per_face": _median(r["onnxruntime_s_per_face"] for r in group) * 1e3,
                           "eager_gflops_per_s": eager / 1e9, "onnxruntime_gflops_per_s": onnx / 1e9,
                           "eager_share_of_peak": eager / peak, "onnxruntime_share_of_peak": onnx / peak_inproc})
    batching = []
    generator = result["config"]["generator"]
    for r in runs:
        stats = r.get("server_stats")
        if stats and generator in stats:
            g = stats[generator]
            batching.append({"label": r["label"], "repeat": r["repeat"],
                             "frames": stats[f"deid_{generator}"]["requests"],
                             "generator_requests": g["requests"], "generator_executions": g["executions"],
                             "generator_inferences": g["inferences"]})
    stages = stage_breakdown(runs)
    return {"table": table, "peak_gflops_per_s": peak / 1e9,
            "peak_gflops_per_s_by_threads": {t: v / 1e9 for t, v in peaks.items()}, "generators": generators,
            "batching": batching,
            "stages": stages, "targets": targets(table, batching)}


def stage_breakdown(runs: list[dict]) -> list[dict]:
    """Time per frame in each step: Triton's statistics per ensemble step, and the in-process onnxruntime timers."""
    out = []
    for mode in dict.fromkeys(r["label"] for r in runs if r.get("step_ms_per_frame")):  # onnxruntime, torch
        inproc = [r for r in runs if r["label"] == mode and r.get("step_ms_per_frame")]
        for model in inproc[0]["step_ms_per_frame"]:
            out.append({"label": f"{mode} (in-process)", "model": model, "queue_ms": 0.0, "input_ms": 0.0,
                        "infer_ms": _median(r["step_ms_per_frame"][model] for r in inproc), "output_ms": 0.0,
                        "executions_per_frame": 1.0})
    labels = dict.fromkeys(r["label"] for r in runs if r.get("server_stats"))
    for label in labels:
        group = [r for r in runs if r["label"] == label]
        models = [m for m in group[0]["server_stats"] if not m.startswith("deid_")]
        for model in models:
            def per(key, model=model, group=group):
                return _median(r["server_stats"][model][key] / max(r["frames"], 1) / 1e6 for r in group)

            out.append({"label": label, "model": model, "queue_ms": per("queue_ns"),
                        "input_ms": per("compute_input_ns"), "infer_ms": per("compute_infer_ns"),
                        "output_ms": per("compute_output_ns"),
                        "executions_per_frame": _median(r["server_stats"][model]["executions"] / max(r["frames"], 1)
                                                        for r in group)})
    return out


def targets(table: list[dict], batching: list[dict]) -> dict:
    rows = {r["label"]: r for r in table}
    triton = [r for r in table if r["label"].startswith("triton")]
    out = {}
    if triton and "eager" in rows:
        best = max(triton, key=lambda r: r["fps"])
        out["triton_best"] = best["label"]
        out["triton_vs_eager"] = best["ratio_to_eager"]
        out["triton_vs_eager_ok"] = bool(best["ratio_to_eager"] and best["ratio_to_eager"] >= 1.5)
        if "onnxruntime" in rows:
            overhead = rows["onnxruntime"]["fps"] / best["fps"] - 1.0
            out["serving_overhead"] = overhead
            out["serving_overhead_ok"] = overhead <= 0.25
    concurrent = [b for b in batching if not b["label"].endswith("c=1")]
    if concurrent:
        out["batching_ok"] = all(b["generator_executions"] < b["generator_requests"] for b in concurrent)
        out["batching"] = {b["label"]: f"{b['generator_executions']} executions for {b['generator_requests']} requests"
                           for b in concurrent if b["repeat"] == 0}
    return out


