"""`python -m tripletlab ...`: the `tripletlab` command."""

from tripletlab.cli.main import main

if __name__ == "__main__":
    main()
