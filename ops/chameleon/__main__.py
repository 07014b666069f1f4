"""``python -m ops.chameleon``: the provisioning CLI (see cli.py)."""

from ops.chameleon.cli import main

if __name__ == "__main__":
    main()
