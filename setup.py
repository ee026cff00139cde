"""Packaging that pyproject.toml cannot say alone: the recipes/ folder ships inside the wheel as the package
``densevision.builtin_recipes`` (one copy of the YAML files: recipes/ in a checkout, package data when installed),
so ``densevision train tiramisu56_camvid`` works from a non-editable install."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["densevision", "densevision.*"]),
              "densevision.builtin_recipes", "densevision.builtin_recipes._base_"],
    package_dir={"densevision.builtin_recipes": "recipes"},
    package_data={"densevision.builtin_recipes": ["*.yaml"], "densevision.builtin_recipes._base_": ["*.yaml"]},
)
