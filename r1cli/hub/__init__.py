"""Models on disk: pulling them from the Hugging Face Hub into its cache, listing and removing them there."""
