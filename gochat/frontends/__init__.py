"""Front ends: one sans-IO dialect per module, each between a transport Connection and the core.

`text` is the nc/telnet dialect. A front end turns its connection's bytes into
core calls and the core's events into bytes; adding one touches no other.
"""
