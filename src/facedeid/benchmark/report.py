"""The benchmark's tables as markdown (what README.md and docs/benchmarks.md show)."""

from __future__ import annotations


def _fmt(value, digits=1, suffix=""):
    if value is None or value != value:
        return "n/a"
    return f"{value:.{digits}f}{suffix}"


def markdown(result: dict) -> str:
    s = result["summary"]
    cfg = result["config"]
    m = result.get("machine", {})
    lines = [f"machine: {m.get('cpu_count')} CPU cores ({m.get('cpu_model', '?')}), GPU: {m.get('gpu', '?')};"
             f" onnxruntime {m.get('onnxruntime')}, torch {m.get('torch')}", "",
             f"generator `{cfg['generator']}` ({'untrained weights' if cfg['allow_untrained'] else 'trained weights'}),"
             f" {len(cfg['frame_files'])} frames, {cfg['repeats']} repeats, median reported;"
             f" Triton ORT threads gen={cfg['gen_threads']} det={cfg['det_threads']} spin={int(cfg.get('spin', True))};"
             f" in-process ORT threads {cfg['inproc_threads']} spin={int(cfg['inproc_spin'])};"
             f" torch threads {cfg['torch_threads']}"
             + (f"; overrides {cfg['overrides']}" if cfg["overrides"] else ""), "",
             "| mode | frames/s | faces/s | p50 ms | p95 ms | client peak MB | server peak MB | x eager |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in s["table"]:
        lines.append(f"| {r['label']} | {_fmt(r['fps'], 2)} | {_fmt(r['faces_per_s'], 1)} | {_fmt(r['p50_ms'], 0)} | "
                     f"{_fmt(r['p95_ms'], 0)} | {_fmt(r['client_peak_mb'], 0)} | {_fmt(r['server_peak_mb'], 0)} | "
                     f"{_fmt(r['ratio_to_eager'], 2)} |")
    if s["generators"]:
        by_threads = ", ".join(f"{_fmt(v, 1)} GFLOP/s with {t} thread{'s' if int(t) > 1 else ''}"
                               for t, v in s["peak_gflops_per_s_by_threads"].items())
        lines += ["", f"Machine peak (float32 {cfg['matmul_n']}x{cfg['matmul_n']} matmul, torch, best of 10 per "
                  f"repeat, best repeat): {by_threads}."
                  f" Generators alone, batch {cfg['flops_batch']}: eager with {cfg['torch_threads']} threads,"
                  f" ORT with {cfg['inproc_threads']}, each against the peak at its own thread count.", "",
                  "| generator | GFLOPs/face | eager ms/face | ORT ms/face | eager GFLOP/s (% peak) "
                  "| ORT GFLOP/s (% peak) |",
                  "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for g in s["generators"]:
            untrained = "" if g.get("trained") else " (untrained)"
            lines.append(f"| {g['generator']}{untrained} | {g['gflops_per_face']:.3f} | {g['eager_ms_per_face']:.1f} | "
                         f"{g['onnxruntime_ms_per_face']:.1f} | {g['eager_gflops_per_s']:.1f} "
                         f"({100 * g['eager_share_of_peak']:.0f} %) | {g['onnxruntime_gflops_per_s']:.1f} "
                         f"({100 * g['onnxruntime_share_of_peak']:.0f} %) |")
    if s["stages"]:
        lines += ["", "Server time per frame by step (Triton statistics, ms; queue = waiting for the model):", "",
                  "| level | model | queue | input | infer | output | executions/frame |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for st in s["stages"]:
            lines.append(f"| {st['label']} | {st['model']} | {st['queue_ms']:.1f} | {st['input_ms']:.1f} | "
                         f"{st['infer_ms']:.1f} | {st['output_ms']:.1f} | {st['executions_per_frame']:.2f} |")
    if "temporal" in result:
        from ..evaluation.temporal import table as temporal_table

        move = result["temporal"]["move"]
        lines += ["", f"Face stability in video through the same server (evaluation/temporal.py: camera-move clips of "
                  f"{move['frames']} frames; face change against the input's own, target ratio <= 1.5 and 0 jumps):",
                  "", temporal_table(result["temporal"])]
    for error in result.get("errors", []):
        lines += ["", f"**{error['mode']} failed in repeat {error['repeat'] + 1}**: {error['error'].splitlines()[-1]}"]
    t = s["targets"]
    if t:
        lines += ["", "Targets: "
                  + "; ".join(filter(None, [
                      t.get("triton_vs_eager") and f"{t['triton_best']} = {t['triton_vs_eager']:.2f}x eager "
                      f"({'met' if t['triton_vs_eager_ok'] else 'NOT met'}, >= 1.5x)",
                      "serving_overhead" in t and f"serving overhead {100 * t['serving_overhead']:+.0f} % vs "
                      f"onnxruntime ({'met' if t['serving_overhead_ok'] else 'NOT met'}, <= 25 %)",
                      "batching_ok" in t and f"generator batching under load: {t['batching']} "
                      f"({'met' if t['batching_ok'] else 'NOT met'})"]))]
    return "\n".join(lines)


