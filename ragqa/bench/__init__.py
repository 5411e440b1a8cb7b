"""`ragqa bench ...`: speed measurements (nothing is asserted; numbers are printed)."""
