"""(being written)"""

from litestar import Controller

CONTROLLERS: list[type[Controller]] = []
