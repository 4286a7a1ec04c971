"""python -m benchmarks [--threads 2] [--repeats 5] [--classifier] | --device cuda|cpu [--image H W]"""
import argparse
import json

import torch

from . import cpu, device


def main() -> None:
    parser = argparse.ArgumentParser(prog='python -m benchmarks', description=__doc__.splitlines()[0])
    parser.add_argument('--threads', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--device', choices=('cuda', 'cpu'),
                        help='run the device tables (GPU benchmark) on this device instead of the CPU tables')
    parser.add_argument('--image', type=int, nargs=2, default=(800, 1216), metavar=('H', 'W'),
                        help='with --device: image size (batch 2); level shapes follow it')
    parser.add_argument('--classifier', action='store_true',
                        help='only the classifier row (DiNAT-T vs mmpretrain\'s Swin-T, batch 16 at 224)')
    parser.add_argument('--child', nargs=2, metavar=('KIND', 'SPEC'), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.child:
        print(json.dumps(cpu.child(args.child[0], json.loads(args.child[1]), args.repeats)))
    elif args.device:
        device.device_suite(args)
    elif args.classifier:
        print(cpu.header(args))
        cpu.classifier_table(args)
    else:
        cpu.cpu_tables(args)


if __name__ == '__main__':
    main()
