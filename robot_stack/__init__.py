"""robot_stack."""
