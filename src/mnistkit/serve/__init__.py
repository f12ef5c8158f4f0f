"""`mnistkit serve`: a draw-a-digit page and an HTTP prediction API over a trained run."""

from mnistkit.serve.app import create_app

__all__ = ["create_app"]
