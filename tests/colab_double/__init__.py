"""A stand-in for Google Colab in tests: ``google/colab`` (put this folder on ``sys.path``/``PYTHONPATH`` and
``import google.colab`` resolves to the double) and :mod:`colab_double.control` (the test side: environment,
Drive folder, unmount, the kernel that mounted)."""
