"""``python -m manager_cli``: the managerctl console script."""

from manager_cli.cli.entry import main

if __name__ == "__main__":
    main()
