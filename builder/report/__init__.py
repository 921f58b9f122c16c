"""The matrix report: every tag's recorded results as reports/matrix.{json,md} and reports/index.html."""
