"""tritonforge's builder: trained models in, a verified Triton model repository out.

The library API is :func:`tritonforge.converters.build.build_repository`; ``build-repo`` is a thin CLI over it.
"""
