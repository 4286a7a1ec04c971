"""Run a Hugging Face DiNAT classifier folder (config.json, model.safetensors) in transformers
through dinat_mm.hf, and loaded whole into an mmpretrain config's classifier, on one image.

    python tools/hf_compare.py HUB_FOLDER CONFIG IMAGE [--topk 5]
"""
import argparse
import sys

from dinat_mm.cli.hf_compare import compare, table
from dinat_mm.errors import UserError


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('folder', help='a Hugging Face model folder: config.json and model.safetensors')
    parser.add_argument('config', help='the mmpretrain config of the same model (configs/imagenet/)')
    parser.add_argument('image', help='an image file')
    parser.add_argument('--topk', type=int, default=5)
    args = parser.parse_args()
    try:
        print(table(compare(args.folder, args.config, args.image, args.topk)))
    except UserError as err:
        sys.exit(f'error: {err}')


if __name__ == '__main__':
    main()
