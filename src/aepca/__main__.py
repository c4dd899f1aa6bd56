from aepca.cli import console

console()
