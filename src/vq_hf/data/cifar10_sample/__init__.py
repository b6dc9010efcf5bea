"""Embedded CIFAR-10 sample (parquet data files; see README.md). A package so that wheels and sdists carry it."""
