"""The top floor: the jobs a user launches (docs/ARCHITECTURE.md). Each uses the middle floor (``policies``, ``sim``,
``hardware``) over the core; ``robot_stack.commands`` are thin argparse wrappers over these.

train (online SAC in sim), offline (CQL / IQL / BC from recorded episodes), sweep and sweep_offline (grids on Ray),
collect, replay, run (the control loop), serving (the policy server, or one spawned as a child), calibrate, data,
demo, and evaluation (the one evaluation routine and eval-seed scheme the others use).
"""
