"""Test double of the ``google.colab`` package (only what seglib uses: ``drive`` and ``_message``).

``google`` is a namespace package here (no ``google/__init__.py``), so ``google.protobuf`` and other
``google.*`` packages installed in site-packages still import next to it.
"""
