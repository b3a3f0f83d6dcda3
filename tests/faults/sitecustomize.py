"""Fault injection for tests/test_faults.py, loaded by every Python process of a job started with this
folder on PYTHONPATH (the driver and Ray's workers): a crop whose pixels are all OCR_TEST_POISON_VALUE
kills the process reading it with SIGKILL, as a crash in native code or the OOM killer would."""

import os
import sys

if os.environ.get("OCR_TEST_POISON_VALUE"):
    import importlib.abc
    import importlib.machinery

    class _PatchRecognizer(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):   # noqa: ARG002 (the finder protocol's signature)
            if name != "crnn.recognizer":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)
            load = spec.loader.exec_module

            def exec_module(module):
                load(module)
                value, original = int(os.environ["OCR_TEST_POISON_VALUE"]), module.Recognizer.predict_padded

                def predict_padded(self, batch, widths):
                    if any((batch[i, :, :w] == value).all() for i, w in enumerate(widths)):
                        os.kill(os.getpid(), 9)
                    return original(self, batch, widths)

                module.Recognizer.predict_padded = predict_padded

            spec.loader.exec_module = exec_module
            return spec

    sys.meta_path.insert(0, _PatchRecognizer())
