"""The matrix: matrix.yaml's types, loader and validation, and the compatibility facts it is checked against."""
