"""Step templates: each file is a complete Triton Python-backend ``model.py``.

They import nothing from tritonforge (the NGC image does not have it): numpy, the standard
library and Pillow only. Each keeps its logic in a pure function over a whole batch, which the
builder also calls in-process to verify an ensemble before it is written.
"""
