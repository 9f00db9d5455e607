"""What every layer of slurm-graphql shares and none owns: the error tree's root (errors.py).

It sits beneath server, schema, resolvers and transport and imports none of them; it is named
after the project, like its loggers (`slurm_graphql.*`), so no other distribution's package is
likely to take its name (server/packages.py checks at start-up that none did)."""
