"""Export generators to ONNX into model_repository/ (parity-checked against PyTorch); never builds TensorRT.

    python export/to_onnx.py --model mobileunet|resnet50unet|d2gan|all [--backend auto|python|onnxruntime]

`auto` writes the native `onnxruntime` config where a GPU is present, else the CPU (Python-backend) config.
"""

import sys

from facedeid.export import main

if __name__ == "__main__":
    sys.exit(main(allow_tensorrt=False))
