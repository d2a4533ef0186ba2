"""SpeechBrain ``Brain`` subclasses shared by the recipes."""
