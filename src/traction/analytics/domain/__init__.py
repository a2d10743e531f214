"""The pure analytics core: specs, their validation and time arithmetic. No I/O."""
