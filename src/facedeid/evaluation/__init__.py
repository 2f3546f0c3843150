"""Evaluation over DNA-format data sets: runner (eval/triton_eval.py), tables, HTML report, resumable results."""
