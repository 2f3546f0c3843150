"""Export generators for serving: ONNX, then a TensorRT FP16 plan where TensorRT and a GPU are present.

    python export/to_trt.py --model mobileunet|resnet50unet|d2gan|all [--backend auto|...] [--allow-untrained]

Without TensorRT or a GPU it says so in one line and writes the ONNX model with the CPU (Python-backend) config.
"""

import sys

from facedeid.export import main

if __name__ == "__main__":
    sys.exit(main())
