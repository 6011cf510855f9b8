"""inferledger: cost observability and audit logging for AI inference (wiring: CLI, config, app)."""
from inferledger.memory import arrow_on_the_system_allocator

arrow_on_the_system_allocator()  # before anything imports pyarrow (inferledger/memory.py)
