"""Build hook for the optional C accelerator (everything else is in pyproject.toml).

``v2py._chunkcrypt`` seals/opens VMess AEAD chunks in batches over the system
libcrypto (dlopen'ed at import, so no OpenSSL headers are needed).  It is optional:
if it fails to compile, installation goes on and v2py runs its pure-Python path.
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "v2py._chunkcrypt",
            sources=["src/v2py/_chunkcrypt.c"],
            libraries=["dl"],
            extra_compile_args=["-O2"],
            optional=True,
        )
    ]
)
