"""The params files, shipped inside the package as ``tifkit.params`` (pyproject.toml maps this folder
there), so that ``load_params("tiny.yaml")`` works from any folder wherever tifkit is installed."""
