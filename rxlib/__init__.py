"""rxlib: the package behind the RxRx1 explainability compendium.

Stages, one sub-package each: ``rxlib.data`` (reading RxRx1 in its three layouts),
``rxlib.synth`` (the synthetic RxRx1 with planted ground truth), ``rxlib.plotting`` (figures),
``rxlib.reproduce`` (the papermill runner). Nothing happens on import.
"""
__version__ = "0.1.0"
