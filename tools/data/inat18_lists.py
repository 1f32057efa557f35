"""iNaturalist 2018's JSON annotations -> the two image lists mmpretrain's CustomDataset
reads (``configs/eval/transfer/inat18.py``).

    python tools/data/inat18_lists.py data/inat2018

reads ``ROOT/train2018.json`` and ``ROOT/val2018.json`` (the official release: COCO-style
``images`` with ``file_name`` relative to ROOT, ``annotations`` with ``image_id`` and
``category_id`` in 0..8141) and writes ``ROOT/meta/train.txt`` and ``ROOT/meta/val.txt``,
one ``file_name category_id`` line per image, in the JSON's image order.
"""
import argparse
import json
import os
import os.path as osp


def image_list(annotation_file):
    """``[(file_name, category_id), ...]`` of one iNat JSON file, in its image order."""
    with open(annotation_file) as f:
        data = json.load(f)
    label = {a['image_id']: int(a['category_id']) for a in data['annotations']}
    missing = [im['id'] for im in data['images'] if im['id'] not in label]
    if missing:
        raise SystemExit(f'{annotation_file}: {len(missing)} images have no annotation '
                         f'(e.g. id {missing[0]}); the test split has no labels')
    return [(im['file_name'], label[im['id']]) for im in data['images']]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('root', help='the iNat 2018 folder (train2018.json, val2018.json, '
                   'train_val2018/)')
    args = p.parse_args(argv)
    os.makedirs(osp.join(args.root, 'meta'), exist_ok=True)
    for split in ('train', 'val'):
        pairs = image_list(osp.join(args.root, f'{split}2018.json'))
        out = osp.join(args.root, 'meta', f'{split}.txt')
        with open(out, 'w') as f:
            f.writelines(f'{name} {label}\n' for name, label in pairs)
        print(f'{out}: {len(pairs)} images, {len({lab for _, lab in pairs})} classes')


if __name__ == '__main__':
    main()
