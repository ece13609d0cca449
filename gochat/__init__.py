"""gochat: a chat daemon for people with nc, telnet, socat or openssl s_client."""

__version__ = "0.1.0"
