"""The client side: where requests go (target), what a stream means (stream), the blocking and asyncio
transports (sync, aio) over one HTTP layer (http), and the turn engine above them (turn, transcript)."""
