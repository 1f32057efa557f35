"""Evaluate a checkpoint with an mmpretrain, mmseg or mmdet config (``default_scope``
decides). Arguments as in the frameworks' tools/test.py."""
import argparse

# Only the light command line here: torch, OpenMMLab and sslreg are imported in main(),
# once the arguments are parsed, so --help answers at once (tools/_cli.py).
from _cli import add_common_args, add_non_strict_arg, parse_args


def arg_parser():
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='dump the raw predictions to this pickle file')
    parser.add_argument('--show-dir', help='save drawn predictions to this directory')
    add_non_strict_arg(parser, 'the checkpoint')
    return add_common_args(parser)


def enable_visualization(cfg, show_dir):
    """Each framework's visualization hook names its output option differently."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise SystemExit('--show-dir: the config has no default_hooks.visualization hook')
    kind = hook.get('type', '')
    if kind.endswith('SegVisualizationHook'):
        hook['draw'] = True
        cfg.visualizer['save_dir'] = show_dir
    elif kind.endswith('DetVisualizationHook'):
        hook['draw'] = True
        hook['test_out_dir'] = show_dir
    else:  # mmpretrain's VisualizationHook
        hook['enable'] = True
        hook['out_dir'] = show_dir


def main():
    args = parse_args(arg_parser())
    import sslreg  # noqa: F401  registers sslreg's modules, applies sslreg.compat
    from sslreg.checkpoint_fit import check_checkpoint_fit
    from sslreg.launch import (build_runner, default_collate_for_mmpretrain,
                               finish_distributed, load_config, set_work_dir)
    cfg = load_config(args.config, args.cfg_options)
    set_work_dir(cfg, args.config, args.work_dir)
    cfg.load_from = args.checkpoint
    default_collate_for_mmpretrain(cfg)
    if args.show_dir:
        enable_visualization(cfg, args.show_dir)
    if args.out:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('--out must be a .pkl or .pickle file')
        evaluator = cfg.test_evaluator
        evaluator = list(evaluator) if isinstance(evaluator, (list, tuple)) else [evaluator]
        cfg.test_evaluator = evaluator + [dict(type='DumpResults', out_file_path=args.out)]
    runner = build_runner(cfg, args.launcher, quiet=args.quiet)
    check_checkpoint_fit(runner.model, args.checkpoint, strict=not args.non_strict)
    runner.test()
    finish_distributed()


if __name__ == '__main__':
    main()
