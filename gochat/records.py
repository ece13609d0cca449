"""Chat objects as store records and back: what the journal writes, what start-up reads.

The store knows records (gochat.store), the core knows events and lobbies;
this is the one place that maps between them, so a field added to either
side is mapped here once for writing and once for reading back.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gochat.events import ChatMessage, DirectMessage
from gochat.names import name_key
from gochat.store import DeleteLobby, DirectRecord, LobbyRecord, MessageRecord, Op, Store

if TYPE_CHECKING:
    from gochat.lobbies import Lobby, LobbyManager

Pending = ChatMessage | DirectMessage | LobbyRecord | DeleteLobby
"""What the journal queues: a lobby change is a record taken at once, since the
lobby may change again before the write."""


def lobby_record(lobby: Lobby) -> LobbyRecord:
    return LobbyRecord(
        lobby.key,
        lobby.name,
        lobby.creator,
        lobby.description,
        lobby.password_hash,
        lobby.persona,
        lobby.created_at,
        lobby.last_active,
    )


def to_op(item: Pending) -> Op:
    """A queued item as the store's record."""
    if isinstance(item, ChatMessage):
        return MessageRecord(
            name_key(item.lobby),
            item.sender,
            item.picture,
            item.text,
            item.kind,
            item.timestamp,
            item.tagged,
        )
    if isinstance(item, DirectMessage):
        return DirectRecord(item.sender, item.recipient, item.picture, item.text, item.timestamp)
    return item


def to_message(record: MessageRecord, lobby_name: str) -> ChatMessage:
    return ChatMessage(
        lobby_name,
        record.sender,
        record.picture,
        record.body,
        record.timestamp,
        record.kind,
        record.tagged,
    )


async def hydrate(lobbies: LobbyManager, store: Store) -> tuple[int, int]:
    """Put every stored lobby and its recent history back; return (lobbies, messages)."""
    size = lobbies.history_size
    records = {record.key: record for record in await store.load_lobbies()}
    general = lobbies.general
    if general.key not in records:
        history = await store.recent_messages(general.key, size)
        general.history.extend(to_message(m, general.name) for m in history)
        if history:
            general.last_active = max(general.last_active, history[-1].timestamp)
    count = 0
    for record in records.values():
        history = await store.recent_messages(record.key, size)
        last = max(record.last_active, history[-1].timestamp if history else 0.0)
        lobbies.restore(
            record.name,
            creator=record.creator,
            description=record.description,
            password_hash=record.password_hash,
            persona=record.persona,
            created_at=record.created_at,
            last_active=last,
            history=[to_message(m, record.name) for m in history],
        )
        count += len(history)
    return len(records), count + len(general.history)
