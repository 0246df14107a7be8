"""``xgate mailbox topic add|remove|list``: a mailbox's topic catalogue for hotline calls.
Registered into ``xgate mailbox`` (gateway.cli.mailbox); changes are audited."""

from __future__ import annotations

import argparse

from gateway.cli.call import mailbox_of
from gateway.cli.common import command_session, operator_actor, settings_from_args
from mailboxes.hotline.topics import add_topic, list_topics, remove_topic


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    topic = sub.add_parser("topic", help="the topic catalogue for hotline calls")
    tsub = topic.add_subparsers(dest="topic_command", required=True, metavar="COMMAND")
    add = tsub.add_parser("add", help="add a topic")
    add.add_argument("address", metavar="ADDRESS")
    add.add_argument("topic", metavar="TOPIC")
    add.set_defaults(handler=cmd_topic_add)
    rm = tsub.add_parser("remove", help="remove a topic (logged calls keep theirs)")
    rm.add_argument("address", metavar="ADDRESS")
    rm.add_argument("topic", metavar="TOPIC")
    rm.set_defaults(handler=cmd_topic_remove)
    ls = tsub.add_parser("list", help="list the topics")
    ls.add_argument("address", metavar="ADDRESS")
    ls.set_defaults(handler=cmd_topic_list)


def cmd_topic_add(args: argparse.Namespace) -> int:
    with command_session(settings_from_args(args)) as session:
        added = add_topic(session, mailbox_of(session, args.address), args.topic,
                          actor=operator_actor())
    print("topic added" if added else "topic exists already")
    return 0


def cmd_topic_remove(args: argparse.Namespace) -> int:
    with command_session(settings_from_args(args)) as session:
        removed = remove_topic(session, mailbox_of(session, args.address), args.topic,
                               actor=operator_actor())
    print("topic removed" if removed else "no such topic")
    return 0


def cmd_topic_list(args: argparse.Namespace) -> int:
    with command_session(settings_from_args(args), read_only=True) as session:
        topics = list_topics(session, mailbox_of(session, args.address).id)
    print("\n".join(topics) if topics else "no topics")
    return 0
