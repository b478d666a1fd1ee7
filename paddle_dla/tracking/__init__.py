"""FairMOT's tracking: its online tracker (``JDETracker``) over any detector's boxes and
embeddings, frames from a video or a folder, the MOTChallenge text formats, and a FairMOT
network's frames turned into tracks."""
from .tracker import JDETracker, Track

__all__ = ['JDETracker', 'Track']
