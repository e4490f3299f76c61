"""A pipeline written the way ezmsg 3.9 users write one (collections inside collections with
their own streams, ``configure()``/``apply_settings``, a required collection setting, ``State``,
``@task``, ``@main``, publisher generators, ``NormalTermination``), for
``ezmsg_console.ez``. The only ezmsg-specific line is the import below: the tests also run this
file on ezmsg 3.9 itself with ``import ezmsg.core as ez`` in its place.

(Not ``@timeit``: ezmsg 3.9's own raises a TypeError on a subscriber; ours is tested apart.)

What happened is written to ``SystemSettings.out`` (JSON) by the recorder, so a test can read it.
"""

import asyncio
import json
import os
import threading
from dataclasses import dataclass

import ezmsg_console.ez as ez


@dataclass
class Tagged:
    text: str
    level: float
    pid: int


class RampSettings(ez.Settings):
    step: float = 1.0
    period: float = 0.002


class Ramp(ez.Unit):
    SETTINGS = RampSettings
    OUTPUT = ez.OutputStream(float)

    @ez.publisher(OUTPUT)
    async def ramp(self):
        value = 0.0
        while True:
            yield self.OUTPUT, value
            value += self.SETTINGS.step
            await asyncio.sleep(self.SETTINGS.period)


class WordsSettings(ez.Settings):
    word: str
    count: int = 6


class Words(ez.Unit):
    SETTINGS = WordsSettings
    OUTPUT = ez.OutputStream(str)

    @ez.publisher(OUTPUT)
    async def speak(self):
        await asyncio.sleep(0.2)  # let the ramp's first values reach the tagger
        for i in range(self.SETTINGS.count):
            yield self.OUTPUT, f"{self.SETTINGS.word}-{i}"
            await asyncio.sleep(0.02)
        raise ez.Complete


class TaggerState(ez.State):
    level: float
    words: int = 0
    beats: int = 0


class Tagger(ez.Unit):
    STATE = TaggerState

    WORDS = ez.InputStream(str)
    LEVEL = ez.InputStream(float)
    TAGGED = ez.OutputStream(Tagged)

    async def initialize(self) -> None:
        self.STATE.level = -1.0

    @ez.subscriber(LEVEL)
    async def on_level(self, level: float) -> None:
        self.STATE.level = level

    @ez.task
    async def heartbeat(self) -> None:
        while True:
            self.STATE.beats += 1
            await asyncio.sleep(0.01)

    @ez.subscriber(WORDS)
    @ez.publisher(TAGGED)
    async def on_word(self, word: str):
        self.STATE.words += 1
        yield self.TAGGED, Tagged(f"{word}@{self.STATE.words}/{min(self.STATE.beats, 1)}", self.STATE.level,
                                  os.getpid())


class RecorderSettings(ez.Settings):
    out: str = ""
    expect: int = 6


class RecorderState(ez.State):
    got: list
    main_thread: str = ""


class Recorder(ez.Unit):
    SETTINGS = RecorderSettings
    STATE = RecorderState

    INPUT = ez.InputStream(Tagged)

    async def initialize(self) -> None:
        self.STATE.got = []

    @ez.main
    def note_main(self) -> None:
        self.STATE.main_thread = "main-ran" if threading.current_thread() is not None else ""

    @ez.subscriber(INPUT)
    async def on_tagged(self, msg: Tagged) -> None:
        self.STATE.got.append({"text": msg.text, "level": msg.level, "tagger_pid": msg.pid})
        if len(self.STATE.got) == self.SETTINGS.expect:
            with open(self.SETTINGS.out + ".tmp", "w") as fh:
                json.dump({"got": self.STATE.got, "recorder_pid": os.getpid(),
                           "main": self.STATE.main_thread}, fh)
            os.replace(self.SETTINGS.out + ".tmp", self.SETTINGS.out)
            raise ez.NormalTermination


class Tagging(ez.Collection):
    """Tags each word with the ramp's latest level; a collection with streams of its own."""

    WORDS = ez.InputStream(str)
    TAGGED = ez.OutputStream(Tagged)

    RAMP = Ramp()
    TAGGER = Tagger()

    def configure(self) -> None:
        self.RAMP.apply_settings(RampSettings(step=0.5))

    def network(self) -> ez.NetworkDefinition:
        return (
            (self.RAMP.OUTPUT, self.TAGGER.LEVEL),
            (self.WORDS, self.TAGGER.WORDS),
            (self.TAGGER.TAGGED, self.TAGGED),
        )


class SystemSettings(ez.Settings):
    word: str
    out: str


class System(ez.Collection):
    SETTINGS = SystemSettings

    WORDS = Words()
    TAGGING = Tagging()
    RECORDER = Recorder()

    def configure(self) -> None:
        self.WORDS.apply_settings(WordsSettings(word=self.SETTINGS.word))
        self.RECORDER.apply_settings(RecorderSettings(out=self.SETTINGS.out))

    def network(self) -> ez.NetworkDefinition:
        return (
            (self.WORDS.OUTPUT, self.TAGGING.WORDS),
            (self.TAGGING.TAGGED, self.RECORDER.INPUT),
        )

    def process_components(self):
        return (self.TAGGING, self.RECORDER)
