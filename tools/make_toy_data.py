"""Generate the embedded toy datasets (deterministic; nothing is downloaded).

    python tools/make_toy_data.py coco data/toy_coco [--train 400] [--val 50] [--seed 0]
    python tools/make_toy_data.py ade data/toy_ade [--train 300] [--val 50] [--seed 0]
    python tools/make_toy_data.py imagenet data/toy_imagenet [--train 600] [--val 120] [--size 128]
    python tools/make_toy_data.py hub data/toy_hub [--seed 0]   (a random DiNAT-Mini in HF's folder layout)
"""
import argparse

from dinat_mm.toydata import make_toy_ade, make_toy_coco, make_toy_hub, make_toy_imagenet


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('kind', choices=['coco', 'ade', 'imagenet', 'hub'])
    parser.add_argument('out', help='output folder')
    parser.add_argument('--train', type=int, help='number of training images')
    parser.add_argument('--val', type=int, help='number of validation images')
    parser.add_argument('--size', type=int, help='image side in pixels (default: 256; imagenet 128)')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    make = dict(coco=make_toy_coco, ade=make_toy_ade, imagenet=make_toy_imagenet, hub=make_toy_hub)[args.kind]
    sizes = {k: v for k, v in (('num_train', args.train), ('num_val', args.val), ('size', args.size)) if v is not None}
    if args.kind == 'hub' and sizes:
        parser.error('hub takes no --train, --val or --size')
    root = make(args.out, seed=args.seed, **sizes)
    print(f'toy {args.kind} dataset ready in {root}')


if __name__ == '__main__':
    main()
