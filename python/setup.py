"""Builds kakunin._kakunin with the repository's CMake, so `pip install ./python` needs nothing
beyond Debian's packages (cmake, ninja-build, g++, pybind11-dev, python3-dev, the library's -dev
packages). With KAKUNIN_BUILD_DIR set to a build directory configured with
-DKAKUNIN_BUILD_PYTHON=ON, the module is built there (one target) and taken from it."""

import os
import pathlib
import shutil
import subprocess
import sys
import sysconfig

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        given = os.environ.get("KAKUNIN_BUILD_DIR")
        if given:
            build_dir = pathlib.Path(given).resolve()
            cache = build_dir / "CMakeCache.txt"
            if not cache.is_file() or "KAKUNIN_BUILD_PYTHON:BOOL=ON" not in cache.read_text():
                sys.exit(f"KAKUNIN_BUILD_DIR={build_dir}: not a build directory configured with "
                         "-DKAKUNIN_BUILD_PYTHON=ON")
        else:
            build_dir = pathlib.Path(self.build_temp).resolve() / "cmake"
            generator = ["-G", "Ninja"] if shutil.which("ninja") else []
            subprocess.check_call(
                ["cmake", "-S", str(ROOT), "-B", str(build_dir), *generator,
                 "-DCMAKE_BUILD_TYPE=Release", "-DKAKUNIN_BUILD_PYTHON=ON",
                 f"-DPython_EXECUTABLE={sys.executable}", "-DKAKUNIN_BUILD_TESTS=OFF",
                 "-DKAKUNIN_BUILD_CLI=OFF", "-DKAKUNIN_BUILD_BENCH=OFF",
                 "-DKAKUNIN_BUILD_EXAMPLES=OFF", "-DKAKUNIN_INSTALL=OFF"])
        subprocess.check_call(["cmake", "--build", str(build_dir), "--target", "kakunin_python",
                               "-j", str(os.cpu_count() or 2)])
        built = build_dir / "python" / "kakunin" / ("_kakunin" + suffix)
        if not built.is_file():
            sys.exit(f"{built} was not built (is it for another Python than {sys.executable}?)")
        target = pathlib.Path(self.get_ext_fullpath(ext.name))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, target)


setup(ext_modules=[Extension("kakunin._kakunin", sources=[])], cmdclass={"build_ext": CMakeBuild})
