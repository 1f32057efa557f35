"""Train an mmpretrain, mmseg or mmdet config (its ``default_scope`` decides), with or
without sslreg regularizers. Arguments as in mmpretrain's tools/train.py."""
import argparse

# Only the light command line here: torch, OpenMMLab and sslreg are imported once the
# arguments are parsed (in merge_args / main), so --help answers at once (tools/_cli.py).
from _cli import add_common_args, add_non_strict_arg, parse_args


def arg_parser():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from this checkpoint, or, without a path, from the '
                        'latest checkpoint in the work dir')
    parser.add_argument('--amp', action='store_true', help='automatic mixed precision (CUDA)')
    parser.add_argument('--no-validate', action='store_true',
                        help='do not evaluate during training')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by actual / base batch size (config auto_scale_lr)')
    parser.add_argument('--no-pin-memory', action='store_true')
    parser.add_argument('--no-persistent-workers', action='store_true')
    add_non_strict_arg(parser, "the config's load_from checkpoint (not --resume)")
    return add_common_args(parser)


def merge_args(cfg, args):
    import torch
    from sslreg.launch import add_tool_hooks, default_collate_for_mmpretrain
    if args.no_validate:
        cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if args.amp:
        if not torch.cuda.is_available():
            raise SystemExit('--amp needs a CUDA device; this machine has none. '
                             'Run without --amp.')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.auto_scale_lr:
        if not cfg.get('auto_scale_lr'):
            raise SystemExit('--auto-scale-lr: the config has no auto_scale_lr = '
                             'dict(base_batch_size=...); add one.')
        cfg.auto_scale_lr.enable = True
    default_collate_for_mmpretrain(cfg)
    add_tool_hooks(cfg)  # RNGStateHook (bit-exact --resume), RunSummaryHook
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg.get(field)
        if not loader:
            continue
        if args.no_pin_memory:
            loader['pin_memory'] = False
        if args.no_persistent_workers:
            loader['persistent_workers'] = False
    return cfg


def main():
    args = parse_args(arg_parser())
    import sslreg  # noqa: F401  registers sslreg's modules, applies sslreg.compat
    from sslreg.checkpoint_fit import check_checkpoint_fit
    from sslreg.launch import build_runner, finish_distributed, load_config, set_work_dir
    cfg = load_config(args.config, args.cfg_options)
    set_work_dir(cfg, args.config, args.work_dir)
    merge_args(cfg, args)
    runner = build_runner(cfg, args.launcher, quiet=args.quiet)
    if cfg.get('load_from') and not cfg.get('resume'):
        check_checkpoint_fit(runner.model, cfg.load_from, strict=not args.non_strict)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    main()
