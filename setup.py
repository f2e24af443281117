"""Package list: every hgc*/hugectr* package plus templates/, shipped as the data package ``hgc.templates``."""
from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["hgc", "hgc.*", "hugectr", "hugectr.*"]) + ["hgc.templates"],
    package_dir={"hgc.templates": "templates"},
    package_data={"hgc.templates": ["*.j2"]},
)
