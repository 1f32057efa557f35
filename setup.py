import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def version():
    text = (HERE / 'sslreg' / 'version.py').read_text()
    return re.search(r"__version__ = '([^']+)'", text).group(1)


def requirements(name):
    """Lines of requirements/<name>.txt, without comments and -r includes."""
    lines = (HERE / 'requirements' / f'{name}.txt').read_text().splitlines()
    return [ln.split('#')[0].strip() for ln in lines
            if ln.split('#')[0].strip() and not ln.startswith('-')]


setup(
    name='sslreg',
    version=version(),
    description='Representation-learning regularizers (rhoSIM/SIM, VCReg, SER, MCR, SidAE) '
                'for OpenMMLab 2.x',
    long_description=(HERE / 'README.md').read_text() if (HERE / 'README.md').exists() else '',
    long_description_content_type='text/markdown',
    packages=find_packages(include=['sslreg', 'sslreg.*']),
    python_requires='>=3.9',
    # The core (sslreg.losses, sslreg.regularizers) needs torch only; the OpenMMLab
    # adapters need the stack, which tools/install.sh installs (mmcv is built there).
    install_requires=['torch'],
    extras_require={'openmmlab': requirements('runtime') + requirements('mminstall'),
                    'tests': requirements('tests'), 'build': requirements('build')},
    license='Apache-2.0',
    zip_safe=False,
)
