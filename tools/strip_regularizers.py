"""Write the plain architecture checkpoint of a RegularizedModel checkpoint.

    python tools/strip_regularizers.py work_dirs/x/epoch_100.pth plain.pth

Drops ``regularizers.*`` (the SIM paper removes the reconstructors before release),
removes the ``architecture.`` prefix, keeps ``meta``; optimizer and scheduler states are
dropped (they index the regularizers' parameters too). The stock config and
tools/test.py load the result strictly. Refuses to overwrite the input.
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.join(osp.dirname(osp.abspath(__file__)), '..'))
import sslreg  # noqa: E402,F401  (safe loading of MMEngine checkpoints)


def strip_state_dict(state_dict):
    """``architecture.*`` keys without the prefix; ``regularizers.*`` dropped."""
    prefix = 'architecture.'
    plain = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
    others = [k for k in state_dict
              if not k.startswith(prefix) and not k.startswith('regularizers.')
              and not k.startswith('data_preprocessor.')]
    if not plain:
        raise ValueError('no architecture.* keys: this is not a RegularizedModel checkpoint')
    if others:
        raise ValueError(f'unexpected keys outside architecture.*/regularizers.*: {others[:5]}')
    return plain


def strip_checkpoint(src, dst):
    if osp.abspath(src) == osp.abspath(dst):
        raise ValueError('the output must differ from the input checkpoint')
    ckpt = torch.load(src, map_location='cpu')
    out = {'meta': ckpt.get('meta', {}), 'state_dict': strip_state_dict(ckpt['state_dict'])}
    torch.save(out, dst)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='RegularizedModel checkpoint')
    parser.add_argument('dst', help='output: the plain architecture checkpoint')
    args = parser.parse_args()
    out = strip_checkpoint(args.src, args.dst)
    print(f'wrote {args.dst}: {len(out["state_dict"])} tensors')


if __name__ == '__main__':
    main()
