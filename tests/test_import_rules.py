"""The layering of docs/architecture.md, checked statically on every sslreg/**/*.py.

``losses`` (pure torch) <- ``regularizers`` (torch only) <- the OpenMMLab adapters
(``models``, ``hooks``, ``evaluation``, ``datasets``, ...). Each rule reads the import
statements with :mod:`ast`, relative ones resolved to absolute module names, so the
test needs no import of sslreg and runs in a second. The same reading of the
``register_module`` calls keeps the doc's registry names true.
"""
import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Set

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / 'sslreg'
FILES = sorted(PACKAGE.rglob('*.py'))
OPENMMLAB = ('mmengine', 'mmcv', 'mmpretrain', 'mmseg', 'mmdet')

#: Adapter packages whose files stay small (lines), and any class anywhere (lines).
FILE_LIMIT, FILE_PACKAGES = 450, ('models', 'hooks', 'evaluation', 'datasets')
CLASS_LIMIT = 230


class Import(NamedTuple):
    path: Path
    line: int
    module: str          # absolute module name ('sslreg.losses.vcreg', 'torch', ...)
    relative: bool
    in_function: bool

    def __str__(self):
        where = ' (inside a function)' if self.in_function else ''
        return f'{self.path.relative_to(ROOT)}:{self.line} imports {self.module}{where}'


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix('').parts)
    if parts[-1] == '__init__':
        parts.pop()
    return '.'.join(parts)


def _package_of(path: Path) -> List[str]:
    name = module_name(path).split('.')
    return name if path.name == '__init__.py' else name[:-1]


def _resolve(path: Path, node: ast.ImportFrom) -> List[str]:
    if not node.level:
        return [node.module]
    package = _package_of(path)
    base = package[:len(package) - (node.level - 1)]
    if node.module:
        return ['.'.join(base + [node.module])]
    # `from . import x`: x may be a submodule
    return ['.'.join(base + [alias.name]) for alias in node.names]


def imports(path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(), filename=str(path))
    functions = [n for n in ast.walk(tree)
                 if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))]
    inside = {id(child) for f in functions for child in ast.walk(f) if child is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name, False, id(node) in inside)
        elif isinstance(node, ast.ImportFrom):
            for module in _resolve(path, node):
                yield Import(path, node.lineno, module, bool(node.level), id(node) in inside)


def _in(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + '.') for p in packages)


def _files_of(subpackage: str) -> List[Path]:
    return [p for p in FILES if p.relative_to(PACKAGE).parts[0] == subpackage]


ALL_IMPORTS = [imp for path in FILES for imp in imports(path)]


def test_every_file_is_seen():
    names = {module_name(p) for p in FILES}
    for expected in ('sslreg.losses.vcreg', 'sslreg.regularizers.taps', 'sslreg.models.mcr',
                     'sslreg.hooks.regularizer_hook', 'sslreg.evaluation.layer_features',
                     'sslreg.datasets.transforms', 'sslreg.architecture'):
        assert expected in names
    # relative imports are resolved: regularizers/vcreg.py reads sslreg.losses.vcreg
    assert any(imp.module == 'sslreg.losses.vcreg' and imp.relative
               and imp.path.name == 'vcreg.py' for imp in ALL_IMPORTS)


def test_losses_import_only_losses_and_no_openmmlab():
    bad = [imp for path in _files_of('losses') for imp in imports(path)
           if (_in(imp.module, 'sslreg') and not _in(imp.module, 'sslreg.losses'))
           or _in(imp.module, *OPENMMLAB)]
    assert not bad, '\n'.join(map(str, bad))


def test_regularizers_import_only_losses_and_regularizers_and_no_openmmlab():
    bad = [imp for path in _files_of('regularizers') for imp in imports(path)
           if (_in(imp.module, 'sslreg')
               and not _in(imp.module, 'sslreg.losses', 'sslreg.regularizers'))
           or _in(imp.module, *OPENMMLAB)]
    assert not bad, '\n'.join(map(str, bad))


def test_hooks_and_evaluation_import_no_model():
    """They find a model's architecture with sslreg.architecture (duck-typed), never by
    importing a model class; sslreg.architecture itself imports no model either."""
    files = _files_of('hooks') + _files_of('evaluation') + [PACKAGE / 'architecture.py']
    bad = [imp for path in files for imp in imports(path) if _in(imp.module, 'sslreg.models')]
    assert not bad, '\n'.join(map(str, bad))


#: Function-local imports of sslreg that are not hiding a circle, and why.
DELIBERATE_LOCAL = {
    # the package imports (and registers) its OpenMMLab part only when mmengine is
    # installed: without it sslreg runs in torch-only mode
    'sslreg/__init__.py': ('sslreg.compat', 'sslreg.datasets', 'sslreg.evaluation',
                           'sslreg.hooks', 'sslreg.models'),
}


def test_no_function_local_import_of_sslreg():
    """Relative imports (and imports of sslreg itself) only at module level: an import
    inside a function is how a circular import gets hidden."""
    bad = [imp for imp in ALL_IMPORTS
           if imp.in_function and (imp.relative or _in(imp.module, 'sslreg'))
           and imp.module not in DELIBERATE_LOCAL.get(str(imp.path.relative_to(ROOT)), ())]
    assert not bad, '\n'.join(map(str, bad))


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def _classes(path: Path):
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            yield node.name, node.end_lineno - node.lineno + 1


@pytest.mark.parametrize('subpackage', FILE_PACKAGES)
def test_adapter_files_stay_small(subpackage):
    sizes = {str(p.relative_to(ROOT)): _lines(p) for p in _files_of(subpackage)}
    big = {p: n for p, n in sizes.items() if n > FILE_LIMIT}
    assert not big, f'files above {FILE_LIMIT} lines (split a cohesive piece out): {big}'


def test_classes_stay_small():
    sizes = {f'{p.relative_to(ROOT)}::{name}': n for p in FILES for name, n in _classes(p)}
    big = {c: n for c, n in sizes.items() if n > CLASS_LIMIT}
    assert not big, f'classes above {CLASS_LIMIT} lines: {big}'


# --------------------------------------------------------------------------- registry names


def _register_calls(tree: ast.AST):
    """``(registry, decorated class/function or None, call)`` of every
    ``REGISTRY.register_module(...)``."""
    decorated = {id(d): n for n in ast.walk(tree)
                 if isinstance(n, (ast.ClassDef, ast.FunctionDef)) for d in n.decorator_list}
    for node in ast.walk(tree):
        func = getattr(node, 'func', None) if isinstance(node, ast.Call) else None
        if (isinstance(func, ast.Attribute) and func.attr == 'register_module'
                and isinstance(func.value, ast.Name)):
            yield func.value.id, decorated.get(id(node)), node


def registering_files() -> List[Path]:
    return [p for p in FILES if any(_register_calls(ast.parse(p.read_text())))]


def registered_names() -> Dict[str, Set[str]]:
    """``{registry: names}`` registered anywhere in sslreg, read from the source."""
    found: Dict[str, Set[str]] = {}
    for path in registering_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        # `for _cls in (A, B): MODELS.register_module(module=_cls)`
        loops = {}
        for loop in (n for n in ast.walk(tree) if isinstance(n, ast.For)):
            if (isinstance(loop.target, ast.Name) and isinstance(loop.iter, (ast.Tuple, ast.List))
                    and all(isinstance(e, ast.Name) for e in loop.iter.elts)):
                for inner in ast.walk(loop):
                    loops[id(inner)] = (loop.target.id, [e.id for e in loop.iter.elts])
        for registry, owner, call in _register_calls(tree):
            kwargs = {k.arg: k.value for k in call.keywords}
            if isinstance(kwargs.get('name'), ast.Constant):
                names = [kwargs['name'].value]
            elif owner is not None:
                names = [owner.name]
            else:
                module = kwargs.get('module')
                assert isinstance(module, ast.Name), f'{path}: unreadable register_module call'
                var, values = loops.get(id(call), (None, None))
                names = values if module.id == var else [module.id]
            found.setdefault(registry, set()).update(names)
    return found


def documented_names() -> Dict[str, Set[str]]:
    """The ``- **REGISTRY**: `Name`, ...`` lines of docs/architecture.md."""
    text = (ROOT / 'docs' / 'architecture.md').read_text()
    return {m.group(1): set(re.findall(r'`([^`]+)`', m.group(2)))
            for m in re.finditer(r'^- \*\*([A-Z_]+)\*\*: (.*)$', text, re.M)}


def test_docs_name_exactly_the_registered_names():
    registered = registered_names()
    assert {'MODELS', 'HOOKS', 'METRICS'} <= set(registered)
    assert {'VCReg', 'RhoSIM', 'SIM', 'FrozenBackbone', 'MCR'} <= registered['MODELS']
    assert documented_names() == registered


def test_import_sslreg_imports_every_registering_module():
    """Every name is registered by ``import sslreg`` (``custom_imports=['sslreg']``): each
    file that registers one is reached from sslreg/__init__.py through imports (a
    module's parent packages are imported with it)."""
    by_name = {module_name(p): p for p in FILES}
    seen, todo = set(), ['sslreg']
    while todo:
        name = todo.pop()
        if name in seen or name not in by_name:
            continue
        seen.add(name)
        parts = name.split('.')
        todo += ['.'.join(parts[:i]) for i in range(1, len(parts))]
        todo += [imp.module for imp in imports(by_name[name]) if _in(imp.module, 'sslreg')]
    missing = [str(p.relative_to(ROOT)) for p in registering_files()
               if module_name(p) not in seen]
    assert not missing, f'registered only when imported by name: {missing}'
