"""The image: a tag's Dockerfile and build context, its base, the build, its size, the rebuild check, push and pull."""
